"""The scripts that produced the committed results in ``data/``, one folder per ``data/`` folder they write, each run
as ``python -m studies.FOLDER.SCRIPT`` (the Makefile's targets). Not part of the wheel: the library is ``litefocus``
(the method) and ``analysis`` (measurement and evaluation); these only use it.

- ``studies.heldout_set``: the held-out captions and their codec round-tripped references (``runs/heldout``), shared
  by the paper tables and the block ablation.
- ``studies.paper_tables``: the paper's Tables 1 to 3 beside ours (``data/paper_tables``, ``data/paper``).
- ``studies.block_ablation``: evidence per block, the ablation's configurations and the block-choice study
  (``data/block_ablation``).
- ``studies.minildm``: MiniLDM's evaluation, diagnosis and fidelity under LiteFocus (``data/minildm``).
- ``studies.evaluator``: training and validation of the offline evaluator (``data/evaluator``).
"""
