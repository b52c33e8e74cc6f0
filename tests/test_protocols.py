"""Named evaluation protocols: audioldm_eval's metrics on VGGish and CNN14-16k built with random weights (saved as
checkpoint files, so the loading path runs too: nothing is downloaded), the paper's seeded crops, audioldm_eval's
pairing by file name, and the errors a user meets before any model runs."""

import numpy as np
import pytest
import soundfile
import torch

from analysis import field_models, protocols, quality
from litefocus_cli.main import main

FIELD_COLUMNS = ["protocol", "metric", "value", "low", "high", "clips", "reference_clips", "backbone", "checkpoint",
                 "sampling_rate", "crop", "evaluator", "note"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Random-weight VGGish and CNN14-16k checkpoints in the released files' formats (float16 to halve the disk)."""
    folder = tmp_path_factory.mktemp("field_checkpoints")
    torch.manual_seed(0)
    half = {k: v.half() for k, v in field_models.build_vggish().state_dict().items()}
    torch.save(half, folder / field_models.VGGISH_FILE)
    half = {k: v.half() for k, v in field_models.build_cnn14().state_dict().items()}
    torch.save({"model": half}, folder / field_models.CNN14_16K_FILE)
    return folder / field_models.VGGISH_FILE, folder / field_models.CNN14_16K_FILE


@pytest.fixture(scope="module")
def models(checkpoints):
    return protocols.FieldModels.load(*checkpoints)


def noise_folder(folder, names, seconds, seed, rate=16000):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, name in enumerate(names):
        tone = np.sin(2 * np.pi * (200 + 150 * i) * np.arange(int(seconds * rate)) / rate)
        soundfile.write(folder / name, (0.3 * tone + 0.05 * rng.standard_normal(len(tone))).astype(np.float32), rate)
    return folder


def test_audioldm_eval_protocol_names_its_metrics_and_models(tmp_path, models):
    names = [f"clip{i}.wav" for i in range(4)]
    gen = noise_folder(tmp_path / "gen", names, 2.5, 0)
    ref = noise_folder(tmp_path / "ref", names, 2.0, 1)
    table = protocols.evaluate(gen, ref, protocol="audioldm_eval", field_models=models)
    assert list(table.columns) == FIELD_COLUMNS
    assert list(table.metric) == list(protocols.FIELD_METRICS[:4])  # no captions: no clap_score
    assert set(table.protocol) == {"audioldm_eval"} and set(table.sampling_rate) == {16000}
    assert set(table.crop) == {"whole clip (padded to 2 s)"}
    assert table.set_index("metric").loc["frechet_distance", "checkpoint"] == field_models.CNN14_16K_FILE
    assert table.set_index("metric").loc["frechet_audio_distance", "checkpoint"] == field_models.VGGISH_FILE
    assert np.isfinite(table.value).all()
    # the KLs are audioldm_eval's formulas on the models' own logits of the same prepared clips
    _, clips, rates = protocols.read_clips(gen)
    _, ref_clips, ref_rates = protocols.read_clips(ref)
    features = [protocols.field_features(c, r, names, protocols.PROTOCOLS["audioldm_eval"], models)
                for c, r in ((clips, rates), (ref_clips, ref_rates))]
    expected = quality.kl_softmax(features[0].logits, features[1].logits, resamples=0).value
    assert table.set_index("metric").loc["kullback_leibler_divergence_softmax", "value"] == pytest.approx(expected)


def test_paper_protocol_scores_a_seeded_crop_of_each_long_clip(tmp_path, models):
    protocol = protocols.check_protocol("paper", seed=3)
    clip = np.arange(16000 * 25, dtype=np.float32)
    part = protocols.crop(clip, 16000, protocol, "a.wav")
    assert len(part) == 160000 and part[0] % 1 == 0 and part[0] + 159999 == part[-1]
    assert (protocols.crop(clip, 16000, protocol, "a.wav") == part).all()  # by name and seed, whatever the set
    assert protocols.crop(clip, 16000, protocol, "b.wav")[0] != part[0]
    assert protocols.crop(clip, 16000, protocols.check_protocol("paper", seed=4), "a.wav")[0] != part[0]
    assert len(protocols.crop(clip[:120000], 16000, protocol, "a.wav")) == 120000  # shorter: whole
    names = ["x.wav", "y.wav"]
    gen = noise_folder(tmp_path / "gen", names, 12.0, 0)
    ref = noise_folder(tmp_path / "ref", names, 10.0, 1)
    table = protocols.evaluate(gen, ref, protocol="paper", seed=3, field_models=models)
    assert set(table.crop) == {"random 10 s (seed 3)"} and set(table.protocol) == {"paper"}
    short = noise_folder(tmp_path / "short", names, 4.0, 2)
    with pytest.raises(ValueError, match="generated: x.wav lasts 4.00 s, shorter than the paper protocol's 10 s crop"):
        protocols.evaluate(short, ref, protocol="paper", field_models=models)


def test_pairs_follow_audioldm_eval_rule():
    gi, ri, note = protocols.pair_by_file_name(["a.wav", "b.wav", "c.wav"], ["c.wav", "a.wav", "b.wav"])
    assert (gi, ri, note) == ([2, 0, 1], [0, 1, 2], "")
    gi, ri, note = protocols.pair_by_file_name(["a.wav", "b.wav"], ["a.wav", "b.flac"])  # names keep their suffix
    assert gi == [] and "left out, as audioldm_eval leaves it out (-1)" in note and "b.wav" in note
    many = [f"{i}.wav" for i in range(200)]
    gi, ri, note = protocols.pair_by_file_name(many, many[:199] + ["other.wav"])  # 99.5 % shared: pairs
    assert len(gi) == 199 and "2 file(s) without a namesake" in note
    with pytest.raises(ValueError, match="repeated file names"):
        protocols.pair_by_file_name(["a.wav", "a.wav"], ["a.wav"])


def test_bad_input_is_named_before_any_model_runs(tmp_path, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(protocols.FieldModels, "load", no_model)
    names = ["a.wav", "b.wav"]
    gen, ref = noise_folder(tmp_path / "gen", names, 2.0, 0), noise_folder(tmp_path / "ref", names, 2.0, 1)
    with pytest.raises(ValueError, match="protocol must be one of clap_kad, audioldm_eval, paper; got 'fad'"):
        protocols.evaluate(gen, ref, protocol="fad")
    tiny = noise_folder(tmp_path / "tiny", names, 0.5, 2)
    with pytest.raises(ValueError, match="reference: a.wav lasts 0.500 s, shorter than one VGGish frame"):
        protocols.evaluate(gen, tiny, protocol="audioldm_eval")
    with pytest.raises(ValueError, match="fad_shrinkage applies to the clap_kad protocol only"):
        protocols.evaluate(gen, ref, protocol="audioldm_eval", fad_shrinkage=0.1)


def test_missing_or_wrong_checkpoints_name_the_file_and_the_argument(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(FileNotFoundError, match="vggish-10086976.pth.*HF_HUB_OFFLINE.*vggish_checkpoint"):
        protocols.FieldModels.load()
    with pytest.raises(FileNotFoundError, match="cnn14_checkpoint='nope.pth' is not a file.*Cnn14_16k"):
        field_models.load_cnn14("nope.pth")
    wrong = tmp_path / "Cnn14_mAP=0.431.pth"  # the 32 kHz front-end: 513 STFT bins
    torch.save({"model": {"logmel_extractor.melW": torch.zeros(513, 64)}}, wrong)
    with pytest.raises(ValueError, match="513 STFT bins.*not the 16 kHz CNN14"):
        field_models.load_cnn14(wrong)


def test_cli_evaluate_takes_the_protocol_and_its_checkpoints(tmp_path, checkpoints, capsys, monkeypatch):
    names = [f"{i}.wav" for i in range(3)]
    gen, ref = noise_folder(tmp_path / "gen", names, 2.0, 0), noise_folder(tmp_path / "ref", names, 2.0, 1)
    out = tmp_path / "table.csv"
    arguments = ["evaluate", str(gen), "--reference", str(ref), "--protocol", "audioldm_eval"]
    assert main([*arguments, "--vggish-checkpoint", str(checkpoints[0]), "--cnn14-checkpoint", str(checkpoints[1]),
                 "--out", str(out)]) == 0
    from litefocus.files import read_csv

    table = read_csv(out)
    assert list(table.metric) == list(protocols.FIELD_METRICS[:4]) and set(table.protocol) == {"audioldm_eval"}
    capsys.readouterr()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert main(arguments) == 2  # offline, no weights: the file and the flag that takes it
    assert "vggish-10086976.pth" in capsys.readouterr().err


def test_evaluate_sweep_under_audioldm_eval_pairs_by_caption_and_caches(tmp_path, checkpoints, capsys):
    from analysis import sweep as sw
    from analysis import sweep_cache
    from analysis import sweep_evaluation as se
    from analysis.ablations import parse_configuration
    from litefocus.files import read_csv
    from litefocus.models import weights_fingerprint
    from minildm import load_minildm

    pipe = load_minildm()
    pipe.set_progress_bar_config(disable=True)
    caps = [sw.Caption(str(i), c, f"clip{i}") for i, c in enumerate(["rain on a roof", "a dog barking"])]
    settings = sw.SweepSettings(weights_fingerprint(pipe), tuple(caps),
                                tuple(parse_configuration(c) for c in ("dense", "litefocus")), (1.28,),
                                (sw.Sampler("default", 2),))
    sweep = sw.Sweep(tmp_path / "sweep", settings)
    sw.run_sweep(pipe, sweep, threads=2, progress=False)
    reference = noise_folder(tmp_path / "reference", [f"clip{i}.flac" for i in range(4)], 1.28, 0)
    arguments = ["evaluate-sweep", str(tmp_path / "sweep"), "--reference", str(reference), "--protocol",
                 "audioldm_eval", "--vggish-checkpoint", str(checkpoints[0]), "--cnn14-checkpoint",
                 str(checkpoints[1]), "--resamples", "5", "--out", str(tmp_path / "ev" / "field")]
    (tmp_path / "ev").mkdir()
    (tmp_path / "ev" / "field_comparisons.csv").write_text("protocol\nclap_kad\n")  # an earlier clap_kad run's
    assert main(arguments) == 0
    table = read_csv(tmp_path / "ev" / "field.csv")
    cells = table[table.configuration != se.FLOOR]
    assert set(cells.metric) == set(protocols.FIELD_METRICS) and set(table.protocol) == {"audioldm_eval"}
    assert (cells.clips == 2).all() and cells.value.notna().all()
    # paired differences are clap_kad only, and the stem owns its set: the stale clap_kad table is gone (issue 27)
    assert not (tmp_path / "ev" / "field_comparisons.csv").exists()
    assert "removed" in capsys.readouterr().out
    # the KL softmax of a cell is the formula on the cached logits of its clips and their captions' reference clips
    models = protocols.FieldModels.load(*checkpoints)
    cache = tmp_path / "sweep" / "embeddings" / sweep_cache.protocol_id(protocols.PROTOCOLS["audioldm_eval"], models)
    rows = sw.read_rows(tmp_path / "sweep")
    dense = rows[rows.configuration == "dense"]
    logits = np.concatenate([np.load(cache / f"{i}.npz")["logits"] for i in dense.id])
    names, ref = sweep_cache.field_reference_features(tmp_path / "sweep", reference, protocols.PROTOCOLS["audioldm_eval"],
                                             models)
    expected = quality.kl_softmax(logits, ref["logits"][[names.index(a) for a in dense.audio_id]], resamples=0)
    got = cells[(cells.configuration == "dense") & (cells.metric == "kullback_leibler_divergence_softmax")]
    assert got.value.iloc[0] == pytest.approx(expected.value)
    stamps = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert main(arguments) == 0  # resumed from the cache: nothing computed twice
    assert {p: p.stat().st_mtime_ns for p in cache.iterdir()} == stamps
    from analysis.evaluator import Evaluator

    offline = Evaluator.offline
    with pytest.MonkeyPatch.context() as patch:  # a wheel without data/: only the CLAP column needs the evaluator
        patch.setattr(Evaluator, "offline", lambda *_, **__: offline(tmp_path / "no evaluator"))
        assert main(arguments) == 2
    assert "only the CLAP score column needs --evaluator offline" in capsys.readouterr().err
    capsys.readouterr()
    assert main([*arguments[:6], "--protocol", "paper", "--vggish-checkpoint", str(checkpoints[0])]) == 2
    assert "each 1.28 s job lasts 1.28 s, shorter than the paper protocol's 10 s crop" in capsys.readouterr().err


def test_cli_refuses_short_clips_before_loading_a_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(protocols.FieldModels, "load", lambda *a, **k: pytest.fail("loaded a model"))
    names = ["a.wav", "b.wav"]
    gen, ref = noise_folder(tmp_path / "gen", names, 4.0, 0), noise_folder(tmp_path / "ref", names, 10.0, 1)
    assert main(["evaluate", str(gen), "--reference", str(ref), "--protocol", "paper"]) == 2
    assert "generated: a.wav lasts 4.00 s, shorter than the paper protocol's 10 s crop" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(crop_seconds=1.0), ValueError, "applies to audioldm_eval's models"),  # reported and never applied
    (dict(uses_field_models=True, crop_seconds=0.0), ValueError, "positive number of seconds"),  # every metric 0.0
    (dict(uses_field_models=True, crop_seconds=-1.0), ValueError, "positive number of seconds"),  # sliced backwards
    (dict(uses_field_models=True, crop_seconds=float("nan")), ValueError, "positive number of seconds"),
    (dict(uses_field_models="yes"), TypeError, "uses_field_models must be True or False"),
    (dict(seed=-3), ValueError, "seed must be an integer >= 0"),
])
def test_a_protocol_is_checked_like_any_other_argument(kwargs, error, message):
    """Issue 27, case 5."""
    from analysis.protocols import Protocol

    settings = {"name": "mine", "description": "", "uses_field_models": False, **kwargs}
    with pytest.raises(error, match=message):
        Protocol(**settings)
    assert Protocol("mine", "", True, crop_seconds=np.float32(2.5)).crop_seconds == 2.5
