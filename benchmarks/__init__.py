"""Speed and memory benchmarks for the three regimes (and peft LoRA); run with ``make bench``.

Not part of the test suite: ``benchmarks/bench.py`` is the entry point, the modules here are importable so
that ``tests/test_speed_properties.py`` can check the instruments the benchmark relies on.
"""
