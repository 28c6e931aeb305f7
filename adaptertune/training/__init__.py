"""The training floor: one run (``run``), its loop, checkpoints and data-parallel plumbing (``loop``,
``checkpoint``, ``distributed``), sweeps of many runs (``sweep``) and the self-pretraining of the mini backbones
(``pretrain``). Imports the library and the store, never the paper floor. The public entry points are
``adaptertune.run`` and ``adaptertune.sweep``; the modules keep their own names here."""
