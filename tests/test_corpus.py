"""The corpus recipe of MiniLDM 2 on clips made without the Debian packages: splits, captions, rendering of notes,
the noise floor, cutting and reading clips. The package-based parts skip with a message where the packages are
absent (they run in `make corpus`)."""

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from minildm import corpus
from minildm.corpus import SAMPLING_RATE, Source


def test_split_is_a_pure_function_of_the_name_with_the_held_out_share():
    names = [f"palestrina/piece_{i}.krn" for i in range(4000)]
    splits = [corpus.split_of(n) for n in names]
    assert splits == [corpus.split_of(n) for n in names]
    share = splits.count("heldout") / len(splits)
    assert abs(share - corpus.HELDOUT_SHARE) < 3 * np.sqrt(0.15 * 0.85 / 4000)


def test_captions_say_what_the_source_is_in_plain_words():
    rng = np.random.default_rng(0)
    music = Source("m", "train", "music", "choir", words=dict(piece="bach", tempo="slow", drums=False))
    quartet = Source("q", "train", "music", "string quartet", words=dict(piece="tune", tempo="fast", drums=True))
    speech = Source("s", "train", "speech", "french", words=dict(speaker="woman"))
    synthetic = Source("f", "train", "speech", "english", words=dict(speaker="man", synthetic=True))
    scene = Source("e", "train", "environment", "rain", words=dict(effect=["thunder"]))
    for _ in range(20):
        assert " singing " in corpus.caption(music, rng) and "playing" not in corpus.caption(music, rng)
        text = corpus.caption(quartet, rng)
        assert "playing" in text and text.endswith("with drums")
        assert corpus.caption(speech, rng).startswith("a woman ") and corpus.caption(speech, rng).endswith("french")
        assert corpus.caption(synthetic, rng).startswith("a synthesized male voice")
        assert corpus.caption(scene, rng).endswith("thunder")
    captions = [corpus.caption(s, rng) for s in (music, quartet, speech, synthetic, scene) for _ in range(10)]
    words = corpus.caption_vocabulary(captions)
    assert words == sorted(set(words)) and all(re.fullmatch("[a-z]+", w) for w in words)
    assert len({corpus.caption(music, rng) for _ in range(30)}) > 1  # several wordings


def test_noise_floor_is_never_digital_silence_and_sits_at_minus_50_db():
    floor = corpus._noise_floor(SAMPLING_RATE * 2, np.random.default_rng(0))
    assert floor.dtype == np.float32 and (floor != 0).mean() > 0.99
    assert 20 * np.log10(floor.std()) == pytest.approx(-50, abs=0.1)


def _have_renderer() -> bool:
    try:
        import tinysoundfont  # noqa: F401
    except ImportError:
        return False
    return corpus.SOUNDFONT.is_file()


@pytest.mark.skipif(not _have_renderer(), reason="tinysoundfont or the FluidR3 soundfont is absent (`make corpus`)")
def test_rendered_notes_sound_at_their_pitch_for_exactly_the_asked_length():
    rng = np.random.default_rng(0)
    a4 = corpus.render_notes([[(0.0, 5.0, 69)]], (73,), 1.5, None, rng)  # a flute A4 held past the end
    assert a4.shape == (int(1.5 * SAMPLING_RATE),) and np.isfinite(a4).all()
    spectrum = np.abs(np.fft.rfft(a4[: SAMPLING_RATE]))
    assert np.argmax(spectrum) == pytest.approx(440, abs=8)  # 1 s of audio: bins 1 Hz apart
    # every note is released before the last half second, and the length never runs away
    assert np.abs(a4[-SAMPLING_RATE // 10:]).max() < 0.2 * np.abs(a4).max()
    silent = corpus.render_notes([[(3.0, 4.0, 60)]], (0,), 1.0, None, rng)  # a note after the end is never played
    assert silent.shape == (SAMPLING_RATE,) and np.abs(silent).max() < 1e-4
    drums = corpus.render_notes([], (0,), 1.0, 120.0, rng)
    assert np.abs(drums).max() > 1e-3


def _write_corpus(root: Path) -> dict[str, np.ndarray]:
    import soundfile

    rng = np.random.default_rng(0)
    (root / "sources").mkdir(parents=True)
    sources = [Source("a", "train", "music", "piano", seconds=6.0, words=dict(piece="bach", tempo="slow")),
               Source("b", "heldout", "speech", "french", seconds=21.0, words=dict(speaker="woman"))]
    audio = {}
    for s in sources:
        audio[s.id] = (rng.standard_normal(int(s.seconds * SAMPLING_RATE)) * 0.1).astype(np.float32)
        soundfile.write(root / "sources" / f"{s.id}.wav", audio[s.id], SAMPLING_RATE, subtype="FLOAT")
    rows = corpus.cut_clips(sources, rng)
    with open(root / "clips.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return audio


def test_clips_are_cut_by_split_and_read_back_sample_exact(tmp_path):
    audio = _write_corpus(tmp_path)
    train, rows = corpus.read_clips(tmp_path, "train", 2.56)
    # 6 s of a train source every 1.28 s: offsets 0, 1.28, 2.56 (3.84 + 2.56 > 6)
    assert [float(r["offset"]) for r in rows] == [0.0, 1.28, 2.56]
    assert train.shape == (3, 40960)
    np.testing.assert_array_equal(train[1], audio["a"][int(1.28 * SAMPLING_RATE): int(1.28 * SAMPLING_RATE) + 40960])
    held, rows = corpus.read_clips(tmp_path, "heldout", 2.56)
    assert len(rows) == 8 and all(r["source"] == "b" and r["category"] == "speech" for r in rows)  # every 2.56 s
    long, rows = corpus.read_clips(tmp_path, "heldout", 20.48)
    assert long.shape == (1, 327680) and rows[0]["offset"] == "0.0"
    with pytest.raises(ValueError, match="no train clips of 10.24 s"):
        corpus.read_clips(tmp_path, "train", 10.24)
    with pytest.raises(FileNotFoundError, match="make corpus"):
        corpus.read_clips(tmp_path / "missing", "train", 2.56)


def test_bad_arguments_and_missing_packages_stop_before_any_work(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        corpus.main(["--out", str(tmp_path / "c"), "--hours", "0"])
    assert "--hours" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        corpus.main(["--out", str(tmp_path / "c"), "--source-seconds", "10"])
    assert "20.48" in capsys.readouterr().err
    monkeypatch.setattr(corpus, "_installed_version", lambda package: None)
    with pytest.raises(SystemExit, match="make corpus"):
        corpus.main(["--out", str(tmp_path / "c")])
    assert not (tmp_path / "c").exists()


EXTRACTED = Path("runs/corpus/extracted")


@pytest.mark.skipif(not (EXTRACTED / "usr/share/asterisk/sounds").is_dir(),
                    reason="the Asterisk and 0 A.D. packages are not extracted in runs/corpus (`make corpus`)")
def test_package_sources_keep_every_prompt_and_recording_in_one_split():
    rng = np.random.default_rng(0)
    speech = corpus.speech_sources(EXTRACTED, 30.0, 600.0, rng)
    prompts = {}
    for s in speech:
        for item in s.origin.split(" " if s.package != "flite" else " | "):
            prompts.setdefault(item, set()).add(s.split)
    assert all(len(splits) == 1 for splits in prompts.values())
    scenes = corpus.environment_sources(EXTRACTED / "usr/share/games/0ad/mods/public/public.zip", 48, rng)
    files = {}
    for s in scenes:
        for name in s.origin.split(" "):
            files.setdefault(name, set()).add(s.split)
    assert all(len(splits) == 1 for splits in files.values())
    assert {s.label for s in scenes if s.split == "heldout"} == set(corpus.SCENES)
