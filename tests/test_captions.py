"""Caption files read as a user writes them: a byte-order mark, another encoding, quoted fields over two lines."""

import pytest

from analysis.captions import Caption, captions_of_files, read_captions


def test_a_byte_order_mark_is_not_part_of_the_first_caption(tmp_path):
    path = tmp_path / "caps.txt"
    path.write_bytes("\ufeffa dog barking\nrain on a roof\n".encode("utf-8"))
    assert read_captions(path) == [Caption("1", "a dog barking"), Caption("2", "rain on a roof")]
    csv = tmp_path / "test.csv"
    csv.write_bytes("\ufeffaudiocap_id,youtube_id,start_time,caption\n7,yt,0,a cat\n".encode("utf-8"))
    assert read_captions(csv) == [Caption("7", "a cat", "yt")]  # the header's first column still found


def test_a_file_that_is_not_utf8_names_the_byte(tmp_path):
    path = tmp_path / "caps.txt"
    path.write_bytes("a dog barking\nun caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"caps.txt is not UTF-8: byte 0xe9 at offset 20"):
        read_captions(path)


def test_a_quoted_field_may_hold_a_newline(tmp_path):
    csv = tmp_path / "test.csv"
    csv.write_text('audiocap_id,youtube_id,start_time,caption\n1,a,0,"a dog barking,\nthen rain"\n2,b,0,x\n3,c,0\n')
    with pytest.raises(ValueError, match="line 5: 3 fields"):  # the record after the two-line one starts on line 5
        read_captions(csv)
    csv.write_text('audiocap_id,youtube_id,start_time,caption\n1,a,0,"a dog barking,\nthen rain"\n2,b,0,x\n')
    assert read_captions(csv) == [Caption("1", "a dog barking,\nthen rain", "a"), Caption("2", "x", "b")]


def test_captions_of_generated_files_by_stem_or_in_file_order(tmp_path):
    csv = tmp_path / "c.csv"
    csv.write_text("file,caption\nb.wav,rain\na,a dog\n")
    assert captions_of_files(csv, ["a", "b"]) == ["a dog", "rain"]
    with pytest.raises(ValueError, match="no caption for 1 generated files"):
        captions_of_files(csv, ["a", "b", "c"])
    lines = tmp_path / "c.txt"
    lines.write_bytes("\ufeffa dog\nrain\n".encode())
    assert captions_of_files(lines, ["a", "b"]) == ["a dog", "rain"]


def test_captions_split_at_line_ends_only(tmp_path):
    """Issue 27, case 4: str.splitlines also split at U+2028, U+2029, form feed, vertical tab, \\x1c-\\x1e and \\x85:
    4 lines became 6 captions and the ids stopped matching the file's lines."""
    path = tmp_path / "captions.txt"
    lines = ["a dog\u2028barking", "rain\x0con a roof", "wind\x1cand\x85birds", "a bell\u2029ringing"]
    path.write_text("\r\n".join(lines[:2]) + "\r" + lines[2] + "\n" + lines[3] + "\n", encoding="utf-8")
    captions = read_captions(path)
    assert [c.id for c in captions] == ["1", "2", "3", "4"] and [c.text for c in captions] == lines
    assert captions_of_files(path, ["a", "b", "c", "d"]) == lines
