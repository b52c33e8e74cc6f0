"""The paper-tables verdicts: which way a paired interval points, and how metrics combine."""

from types import SimpleNamespace

from studies.paper_tables import tables as pt


def interval(low, high):
    return SimpleNamespace(difference=(low + high) / 2, low=low, high=high, pairs=48)


def test_a_paired_interval_is_read_by_the_direction_of_the_metric():
    assert pt.verdict(interval(0.1, 0.3), "KAD") == "worse"  # distances: higher is worse
    assert pt.verdict(interval(0.1, 0.3), "CLAP") == "better"  # text-audio agreement: higher is better
    assert pt.verdict(interval(-0.3, -0.1), "KL") == "better"
    assert pt.verdict(interval(-0.1, 0.3), "FAD") == pt.UNRESOLVED
    assert pt.verdict(None) == "not measured"


def test_metrics_combine_into_one_finding():
    assert pt.combined({"KAD": pt.UNRESOLVED, "CLAP": "worse", "KL": "worse"}) == "worse"
    assert pt.combined({"KAD": "better", "CLAP": "worse"}) == "mixed"
    assert pt.combined({"KAD": pt.UNRESOLVED, "FAD": pt.UNRESOLVED}) == pt.UNRESOLVED


def test_the_paper_numbers_are_read_as_printed():
    paper = pt.paper_tables()
    assert paper["table1"].query("seconds == 80 and method == 'litefocus'").fad.item() == 6.56
    assert paper["table1"].query("seconds == 10 and method == 'dense'").clap_percent.item() == 19.8
    assert paper["table2"].query("seconds == 10 and ratio == 0.2").fad.item() == 3.88
    table3 = paper["table3"].set_index("seconds")
    litefocus = paper["table1"].query("method == 'litefocus'").set_index("seconds")
    for seconds in (10, 20, 40, 80):  # the printed changes are Table 3 minus Table 1's LiteFocus
        assert abs(table3.fad[seconds] - litefocus.fad[seconds] - table3.fad_change[seconds]) < 0.011
