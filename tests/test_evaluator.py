"""The evaluator's wiring on an untrained small CLAP (no quality claim): windows of long clips, resampling, input
errors before any model runs, ``analysis.protocols.evaluate`` on arrays and folders, ``litefocus evaluate``, and a
training run of two steps on a corpus made here."""

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from analysis import protocols
from analysis.evaluator import LABEL_HEAD, Evaluator, LabelHead, check_audio
from studies.evaluator.training import build
from litefocus.files import write_json

RATE = 16000


@pytest.fixture(scope="module")
def evaluator_path(tmp_path_factory) -> Path:
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("evaluator")
    model, processor = build(seed=0)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    torch.manual_seed(0)
    save_file(LabelHead(model.config.projection_dim, 3).state_dict(), path / LABEL_HEAD)
    write_json(path / "classes.json", ["music", "speech", "rain"])
    return path


@pytest.fixture(scope="module")
def evaluator(evaluator_path) -> Evaluator:
    return Evaluator.offline(evaluator_path)


def tones(n: int, seconds: float, seed: int = 0, rate: int = RATE) -> np.ndarray:
    """``n`` tones (100 Hz to 2 kHz, drawn from ``seed`` alone, whatever the rate) with a little noise."""
    rng = np.random.default_rng(seed)
    frequencies = rng.uniform(100, 2000, n)
    t = np.arange(int(seconds * rate)) / rate
    noise = 0.01 * rng.standard_normal((n, len(t)))
    return (0.3 * np.sin(2 * np.pi * frequencies[:, None] * t) + noise).astype(np.float32)


def test_embeddings_have_their_shapes_and_unit_length(evaluator):
    embedded = evaluator.embed(tones(3, 2.56), RATE, ["a flute", "a piano", "rain falling"])
    assert embedded.audio.shape == embedded.clap_audio.shape == embedded.text.shape == (3, 64)
    np.testing.assert_allclose(np.linalg.norm(embedded.clap_audio, axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embedded.text, axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(embedded.probabilities.sum(1), 1, rtol=1e-5)
    assert embedded.probabilities.shape == (3, 3) and evaluator.audio_dim == 64
    again = evaluator.embed(tones(3, 2.56), RATE)  # deterministic: nothing random in a call
    np.testing.assert_array_equal(again.clap_audio, embedded.clap_audio)
    assert again.text is None


def test_a_long_clip_is_the_mean_of_its_windows(evaluator):
    clip = tones(1, 20.0, seed=1)[0]
    halves = evaluator.clap_audio([clip[: 10 * RATE], clip[10 * RATE:]])
    expected = halves.sum(0) / np.linalg.norm(halves.sum(0))
    np.testing.assert_allclose(evaluator.clap_audio([clip])[0], expected, atol=1e-5)
    # a last sliver under a tenth of the window is dropped: 10.24 s embeds as its first 10 s
    long = tones(1, 10.24, seed=2)[0]
    np.testing.assert_allclose(evaluator.clap_audio([long]), evaluator.clap_audio([long[: 10 * RATE]]), atol=1e-6)


def test_clips_at_another_rate_are_resampled_first(evaluator):
    at_16k = tones(2, 2.56, seed=3)
    at_32k = tones(2, 2.56, seed=3, rate=32000)  # the same tones sampled at 32 kHz
    a, b = evaluator.embed(at_16k, RATE).clap_audio, evaluator.embed(at_32k, 32000).clap_audio
    assert (a * b).sum(1).min() > 0.99


def test_bad_audio_is_named_before_any_model_runs():
    good = tones(2, 1.0)
    with pytest.raises(ValueError, match=r"audio\[1\] holds NaN"):
        check_audio([good[0], np.full(RATE, np.nan)], RATE)
    with pytest.raises(ValueError, match=r"audio\[0\] is silent"):
        check_audio(np.zeros((2, RATE)), RATE)
    with pytest.raises(ValueError, match="sampling_rate must be a positive integer"):
        check_audio(good, 0)
    with pytest.raises(ValueError, match="no clips"):
        check_audio([], RATE)
    with pytest.raises(ValueError, match="clips, samples"):
        check_audio(np.zeros((2, 3, 4)), RATE)
    loud = good.copy()
    loud[1] *= 1000  # issue 27, case 9: scored silently, moving FAD 0.105 -> 0.448 and CLAP 10.1 -> 1.0
    with pytest.raises(ValueError, match=r"audio\[1\] peaks at .*must lie in \[-1, 1\]"):
        check_audio(loud, RATE)
    assert len(check_audio(good * 1.2, RATE)) == 2  # a vocoder's overshoot is taken


class NeverCalled:
    name, audio_dim = "never", 64

    def embed(self, *args, **kwargs):
        raise AssertionError("a model ran before the inputs were checked")


def test_evaluate_checks_every_input_before_a_model_runs(tmp_path):
    good = tones(4, 1.0)
    never = NeverCalled()
    with pytest.raises(ValueError, match="3 captions for 4 generated clips"):
        protocols.evaluate(good, good, ["a"] * 3, never, sampling_rate=RATE)
    with pytest.raises(ValueError, match=r"generated\[2\] is silent"):
        protocols.evaluate(np.concatenate([good[:2], np.zeros((2, RATE), np.float32)]), good, None, never,
                         sampling_rate=RATE)
    with pytest.raises(ValueError, match="pass its sampling_rate"):
        protocols.evaluate(good, good, None, never)
    with pytest.raises(ValueError, match="at least 2 clips"):
        protocols.evaluate(good[:1], good, None, never, sampling_rate=RATE)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio")
    with pytest.raises(ValueError, match="holds no audio files"):
        protocols.evaluate(tmp_path / "empty", good, None, never, sampling_rate=RATE)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        protocols.evaluate(tmp_path / "missing", good, None, never, sampling_rate=RATE)


def test_evaluate_gives_a_tidy_table_and_says_what_it_left_out_or_shrank(evaluator):
    generated, reference = tones(6, 2.56, seed=4), tones(8, 2.56, seed=5)
    table = protocols.evaluate(generated, reference, ["a flute"] * 6, evaluator, sampling_rate=RATE)
    assert list(table.metric) == ["FAD", "KAD", "CLAP", "KL"]
    assert table.set_index("metric").loc[["FAD", "KAD", "CLAP"], "value"].notna().all()
    notes = table.set_index("metric").note
    assert "shrunk by 0.1" in notes.FAD and "left out" in notes.KL  # 6 and 8 clips for 64 dimensions; no pairs
    row = table.set_index("metric").loc["FAD"]
    assert row.low <= row.value <= row.high and row.clips == 6 and row.reference_clips == 8
    paired = protocols.evaluate(generated, generated, None, evaluator, sampling_rate=RATE)
    assert paired.set_index("metric").value.KL == pytest.approx(0.0, abs=1e-9)  # each clip paired with itself
    assert "no captions" in paired.set_index("metric").note.CLAP


def write_folder(folder: Path, clips: np.ndarray, rate: int = RATE) -> None:
    import soundfile

    folder.mkdir(parents=True)
    for i, clip in enumerate(clips):
        soundfile.write(folder / f"clip{i:02d}.wav", clip, rate)


def test_litefocus_evaluate_on_folders(tmp_path, evaluator_path, capsys):
    from litefocus_cli.main import main

    write_folder(tmp_path / "gen", tones(4, 2.56, seed=6))
    write_folder(tmp_path / "ref", tones(4, 2.56, seed=7), rate=22050)  # another rate: resampled on reading
    (tmp_path / "captions.txt").write_text("a flute\na piano\nrain\na woman speaking french\n")
    argv = ["evaluate", str(tmp_path / "gen"), "--reference", str(tmp_path / "ref"), "--captions",
            str(tmp_path / "captions.txt"), "--evaluator", str(evaluator_path), "--out", str(tmp_path / "q.csv")]
    assert main(argv) == 0
    table = pd.read_csv(tmp_path / "q.csv")
    assert set(table.metric) == {"FAD", "KAD", "KL", "CLAP"} and table.value.notna().all()  # KL paired by name
    (tmp_path / "captions.txt").write_text("a flute\n")
    assert main(argv) == 2
    assert "1 captions for 4 generated files" in capsys.readouterr().err
    assert main([*argv[:4], "--evaluator", "nowhere"]) == 2
    assert "--evaluator must be" in capsys.readouterr().err


def test_training_two_steps_on_a_corpus_made_here(tmp_path):
    import soundfile

    from studies.evaluator import training as evaluator_training
    from minildm.corpus import Source

    corpus = tmp_path / "corpus"
    (corpus / "sources").mkdir(parents=True)
    sources = [Source("m", "train", "music", "piano", 12.0, 1, words=dict(piece="bach", tempo="slow", drums=False)),
               Source("s", "train", "speech", "french", 12.0, 2, words=dict(speaker="woman")),
               Source("h", "heldout", "environment", "rain", 12.0, 3, words={})]
    with open(corpus / "sources.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(vars(sources[0])))
        writer.writeheader()
        for i, s in enumerate(sources):
            writer.writerow(vars(s))
            soundfile.write(corpus / "sources" / f"{s.id}.wav", tones(1, 12.0, seed=i)[0], RATE)
    out = tmp_path / "model"
    argv = ["--corpus", str(corpus), "--out", str(out), "--steps", "2", "--batch", "4", "--crops", "2",
            "--threads", "1", "--shuffled-negatives", "0.5"]
    evaluator_training.main(argv)
    loaded = Evaluator.offline(out)
    assert loaded.classes == ["french", "piano"]  # the train split's labels only
    assert loaded.embed(tones(2, 2.56), RATE).probabilities.shape == (2, 2)
    with pytest.raises(SystemExit):  # never writes into an existing folder
        evaluator_training.main(argv)
    with pytest.raises(FileNotFoundError, match="studies.evaluator.training"):
        Evaluator.offline(tmp_path / "missing")


def test_time_shuffled_negatives_hold_the_same_frames_in_another_order():
    from studies.evaluator.training import shuffle_time

    features = torch.randn(3, 1, 1001, 64)
    shuffled = shuffle_time(features, np.random.default_rng(0))
    assert shuffled.shape == features.shape and not torch.equal(shuffled, features)
    for i in range(3):  # every frame is still there, once
        key = lambda x: sorted(map(tuple, x[i, 0].tolist()))  # noqa: E731
        assert key(shuffled) == key(features)


def test_derangements_move_every_segment():
    from studies.evaluator.validation import derangement

    rng = np.random.default_rng(0)
    for count in (2, 3, 7):
        orders = [derangement(count, rng) for _ in range(200)]
        assert all(sorted(o) == list(range(count)) and (o != np.arange(count)).all() for o in orders)
    assert len({tuple(derangement(4, rng)) for _ in range(300)}) == 9  # all 9 derangements of 4 occur
    assert list(derangement(1, rng)) == [0]


def test_temporal_profile_sees_order_and_joins_the_embedding(evaluator_path, tmp_path):
    import shutil

    from analysis.evaluator import TEMPORAL_PROFILE, fit_temporal_profile, temporal_profile
    from studies.evaluator.validation import degrade

    t = np.arange(int(2.56 * RATE)) / RATE
    glide = np.sin(2 * np.pi * (200 + 400 * t) * t)  # a slow upward glide: smooth frame to frame
    clips = (glide[None] * np.linspace(0.2, 0.4, 6)[:, None]).astype(np.float32)
    clean = temporal_profile(list(clips), RATE)
    assert clean.shape == (6, 11)
    np.testing.assert_allclose(clean, temporal_profile(list(clips * 3), RATE), atol=1e-4)  # loudness does not count
    shuffled = temporal_profile(list(degrade(clips, "time shuffle (segment s)", 0.1, seed=0)), RATE)
    assert (shuffled[:, 4:7] < clean[:, 4:7] - 0.1).all()  # slow correlations (160-640 ms) cut
    assert (shuffled[:, -1] > 2 * clean[:, -1]).all()  # and the largest jump is at a seam
    folder = tmp_path / "with_profile"
    shutil.copytree(evaluator_path, folder)
    plain = Evaluator.offline(folder)
    fitted = fit_temporal_profile(list(tones(8, 2.56, seed=3)), plain.clap_audio(list(tones(8, 2.56, seed=3))), RATE)
    write_json(folder / TEMPORAL_PROFILE, fitted)
    evaluator = Evaluator.offline(folder)
    assert evaluator.audio_dim == plain.audio_dim + 11 and "temporal profile" in evaluator.name
    embedded = evaluator.embed(clips, RATE)
    assert embedded.audio.shape == (6, plain.audio_dim + 11)
    np.testing.assert_allclose(embedded.audio[:, :plain.audio_dim], embedded.clap_audio)
    z = (clean - fitted["mean"]) / np.asarray(fitted["std"])
    np.testing.assert_allclose(embedded.audio[:, plain.audio_dim:], fitted["weight"] * z, rtol=1e-6, atol=1e-9)


def test_degradations_do_what_they_say_and_halves_share_no_source():
    from studies.evaluator.validation import degrade, one_per_source, split_by_source

    clips = tones(2, 2.0, seed=8)
    noisy = degrade(clips, "noise (SNR dB)", 10, seed=0)
    snr = 10 * np.log10((clips**2).mean(1) / ((noisy - clips) ** 2).mean(1))
    np.testing.assert_allclose(snr, 10, atol=0.2)
    t = np.arange(2 * RATE) / RATE
    mix = (np.sin(2 * np.pi * 300 * t) + np.sin(2 * np.pi * 3000 * t))[None].astype(np.float32)
    spectrum = np.abs(np.fft.rfft(degrade(mix, "low-pass (Hz)", 1000)[0]))  # 0.5 Hz bins
    assert spectrum[6000] < 1e-3 * spectrum[600]
    shuffled = degrade(clips, "time shuffle (segment s)", 0.25, seed=1)
    assert not np.array_equal(shuffled, clips)
    np.testing.assert_array_equal(np.sort(shuffled, axis=1), np.sort(clips, axis=1))  # the same samples
    ramp = np.arange(2 * RATE, dtype=np.float32)[None].repeat(20, 0)  # 2 s in two 1 s segments: always swapped
    halves = degrade(ramp, "time shuffle (segment s)", 1.0, seed=2)
    np.testing.assert_array_equal(halves[:, :RATE], ramp[:, RATE:])
    with pytest.raises(ValueError, match="kind must be one of"):
        degrade(clips, "reverb", 1)
    rows = [dict(source=f"s{i // 3}", category=["music", "speech"][i % 2], caption="x", label="y") for i in range(24)]
    first, second = split_by_source(rows)
    assert sorted([*first, *second]) == list(range(24))
    assert not {rows[i]["source"] for i in first} & {rows[i]["source"] for i in second}
    chosen = one_per_source(rows)
    assert sorted(rows[i]["source"] for i in chosen) == sorted({r["source"] for r in rows})


def test_the_evaluators_identity_follows_its_files(evaluator_path, tmp_path):
    import shutil

    from analysis.sweep_cache import evaluator_id

    folder = tmp_path / evaluator_path.name  # the same name, the same files: the same cache
    shutil.copytree(evaluator_path, folder)
    assert evaluator_id(Evaluator.offline(folder)) == evaluator_id(Evaluator.offline(evaluator_path))
    write_json(folder / "classes.json", ["music", "speech", "wind"])  # another head's classes: another cache
    assert evaluator_id(Evaluator.offline(folder)) != evaluator_id(Evaluator.offline(evaluator_path))


def test_integer_pcm_is_scaled_and_a_caption_string_is_refused():
    """Issue 22, cases 6 and 16: int16 clips (what scipy.io.wavfile.read returns) were cast without scaling, FAD 2.22
    instead of 0.07; a string as captions was read as one caption per character."""
    from analysis.evaluator import check_audio

    clip = tones(1, 1.0)[0]
    pcm = np.round(clip * 32767).astype(np.int16)
    scaled = check_audio([pcm], RATE)[0]
    assert np.abs(scaled - clip).max() < 1e-4
    unsigned = (np.round(clip * 127) + 128).astype(np.uint8)
    assert np.abs(check_audio([unsigned], RATE)[0] - clip).max() < 1e-2
    evaluator = Evaluator.offline()
    with pytest.raises(ValueError, match="captions must be a list of strings"):
        evaluator.embed(tones(2, 1.0), RATE, "ab")


def test_an_empty_caption_is_named_by_its_index_before_embedding():
    """Issue 22, case 33."""
    with pytest.raises(ValueError, match=r"captions\[1\] must be a non-empty string"):
        Evaluator.offline().embed(tones(2, 1.0), RATE, ["a flute", " "])


def test_a_label_head_that_does_not_match_its_classes_is_named(evaluator_path, tmp_path):
    import json
    import shutil

    folder = tmp_path / "mismatched"
    shutil.copytree(evaluator_path, folder)
    classes = json.loads((folder / "classes.json").read_text())
    write_json(folder / "classes.json", classes + ["one more"])
    with pytest.raises(ValueError, match=f"label_head.safetensors maps to {len(classes)} classes.*names "
                                         f"{len(classes) + 1} classes.*different trainings"):
        Evaluator.offline(folder)
