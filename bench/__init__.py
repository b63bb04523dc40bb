"""Side-by-side benchmarks: this service against CrypTen and MPyC (``mpc bench``).

Installed as the package ``mpc_bench`` (the ``bench/`` directory). Ours runs
the production path: three ``mpc server`` processes over mutual TLS on
loopback, clients in their own processes where the workload says so. The
peers run in virtualenvs created on demand, each as three processes too.
Benchmarks are measurements, never tests: nothing here asserts a speed.
"""
