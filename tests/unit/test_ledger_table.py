"""`arroyo status` shows a chain's ledgers as one table: links, hops matched by sender id,
and the end-to-end runs; a restarted stage shows where it joined."""

from services.ledger_table import hops, render


def chain():
    source = {"name": "source", "input": {"link": "simulated detector", "sent": 100},
              "queue": {"link": "input queue", "sent": 102, "dropped": {}, "depth": 0,
                        "policy": "block"},
              "outputs": [{"link": "output push @tcp://*:1", "sent": 102, "dropped": {},
                           "src": "S", "peers": {"peers": 1, "disconnects": 2}}]}
    middle = {"name": "middle",
              "input": {"link": "input pull >tcp://h:1", "received": 60, "missing": 0,
                        "duplicates": 0, "malformed": {"msgpack": 2, "dtype": 1},
                        "senders": {"S": {"received": 60, "first_seq": 40, "missing": 0,
                                          "missing_ranges": []}},
                        "peers": {"peers": 1, "disconnects": 0}},
              "outputs": [{"link": "output pub @tcp://*:2", "sent": 60,
                           "dropped": {"no subscriber": 3}, "src": "M"}]}
    sink = {"name": "sink",
            "input": {"link": "input sub >tcp://h:2", "received": 55, "missing": 5,
                      "duplicates": 0, "malformed": {},
                      "senders": {"M": {"received": 55, "first_seq": 0, "missing": 5,
                                        "missing_ranges": [[10, 14]]}}},
            "outputs": [{"link": "verifying sink", "runs": [
                {"run": "r1", "frames": 90, "frames_sent": 100, "lost": 10,
                 "missing_ranges": [[10, 14], [50, 54]], "duplicates": 0, "corrupt": 0,
                 "complete": True}]}]}
    return [source, middle, sink]


def test_hops_match_outputs_to_inputs_by_sender():
    found = {hop["from"]: hop for hop in hops(chain())}
    assert found["source"]["to"] == ["middle"]
    assert found["source"]["before"] == 40  # what a killed predecessor of middle took
    assert found["source"]["unaccounted"] == 102 - 40 - 60
    assert found["middle"]["unaccounted"] == 60 - 0 - 55  # pub: each subscriber gets all


def test_render_shows_every_link_hop_and_run():
    text = render(chain(), errors=["tcp://h:9: no status answer"])
    assert "3 (dtype 1, msgpack 2)" in text
    assert "joined S at seq 40" in text and "M missing [10-14]" in text
    assert "no subscriber 3" in text
    assert "source -> middle: sent 102, received 60, 40 before its first message" in text
    assert "lost 10 [10-14, 50-54]" in text and "(complete)" in text
    assert "unreachable: tcp://h:9" in text
