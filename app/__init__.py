"""The SAS browser app: a gradio control panel with the viser 3D viewer embedded (``python launch.py``).

Imports point one way: ``app`` uses ``sas_engine``; the engine never imports gradio, viser or this package.

Importing the app sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment already sets it (it must be set before
torch loads its OpenMP runtime, so it only takes effect when ``app`` is imported first, as ``launch.py`` and
``sas-app`` do). The server answers each query with a few small parallel regions (the text encoder, one
matrix-vector product) from gradio's worker threads; with OpenMP's default active wait their threads spin between
regions and compete for the 2 cores with the handler itself. Measured with ``benchmarks/bench_page_query.py`` (30 new
texts, demo bedroom, idle 2-core machine): the handler's engine step 96 -> 66 ms median (126 -> 75 ms p95), click to
new colours 175 -> 154 ms median (211 -> 166 ms p95).
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
