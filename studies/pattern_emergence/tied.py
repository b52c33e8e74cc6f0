"""Do the features already tell rows apart? ``python -m studies.pattern_emergence.tied --out DIR``.

Probes (:class:`studies.pattern_emergence.run.Probe`: held-out 10.24 s clips at t = 500 and 250) MiniLDM 2 and the
same architecture at diffusers' initialisation, each as it is and with every self-attention's key projection set
equal to its query projection, both times a scale (:func:`minildm.train.initialise_query_key`): a similarity
attention on the model's own features. If it focuses where the trained attention does not, the features carry the
row and the trained query-key maps do not use it. Writes ``DIR/tied.csv`` (one row per model, scale, timestep and
block; scale 0 = the model as it is).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

from litefocus.files import write_csv
from minildm.pipeline import MINILDM2_PATH, load_minildm
from minildm.train import build, initialise_query_key

from .run import Probe

SCALES = (1.0, 2.0, 2.5, 4.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("runs/corpus"), help="minildm.corpus's folder")
    parser.add_argument("--clips", type=int, default=8, help="held-out 10.24 s clips")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/pattern_emergence/tied"),
                        help="the folder for tied.csv (the committed one is data/pattern_emergence)")
    args = parser.parse_args(argv)
    if not (args.corpus / "manifest.json").is_file():
        parser.error(f"--corpus {args.corpus}: no manifest.json there; build the corpus with `make corpus`")
    torch.set_num_threads(args.threads)
    trained = load_minildm(MINILDM2_PATH)
    untrained = build(0, words=trained.caption_encoder.config.vocabulary)
    probe = Probe(args.corpus, trained.codec, args.clips)
    probe.inputs = [i for i in probe.inputs if i[0] == 10.24]
    alphas = trained.scheduler.alphas_cumprod
    rows = []
    for model, pipe in (("MiniLDM 2", trained), ("random init", untrained)):
        for scale in (0.0, *SCALES):
            unet = copy.deepcopy(pipe.unet)
            if scale:
                initialise_query_key(unet, scale, tied=True)
            rows += [dict(model=model, tied_scale=scale, **r)
                     for r in probe.measure(unet, trained.caption_encoder, alphas)]
            print(model, scale, [(r["block"], r["same_frequency_ratio"], r["focus_contrast"]) for r in rows[-14:]
                                 if r["timestep"] == 500 and r["block"] == "down_blocks.1"])
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "tied.csv", rows)
    print(f"wrote {args.out / 'tied.csv'}")


if __name__ == "__main__":
    main()
