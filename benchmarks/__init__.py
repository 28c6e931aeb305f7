"""Machine checks run from a checkout: the speed and memory benchmark (``make bench``: ``bench.py``, judged by
``targets.py``), the paper-path rehearsal (``make rehearse``: ``rehearse.py`` with ``hub_cache.py``) and the GPU
check (``make gpu-check``: ``gpu_check.py``).

Not part of the package. The modules are importable so that the tests can check the instruments and run the
CI-size forms (``bench.py --quick``, ``gpu_check.py --device cpu --quick``, the rehearsal itself).
"""
