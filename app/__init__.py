"""The SAS browser app: a gradio control panel with the viser 3D viewer embedded (``python launch.py``).

Imports point one way: ``app`` uses ``sas_engine``; the engine never imports gradio, viser or this package.
"""
