"""The top layer: the ``litefocus`` command line and the embedded default model.

It may import every layer below it (``litefocus``, the method; ``minildm``, the models trained here; ``analysis``,
measurement); nothing below imports it.
"""
