"""The gradio control panel: scene, colour modes, comparison, queries, inspection, capability, metrics, export.

Handlers are methods of :class:`Panel` taking the tab's session token plus a few values, so tests call them
directly. Every handler turns :class:`~sas_engine.errors.SASError` into a message shown in the page (no traceback)
and leaves the other outputs unchanged.
"""
from __future__ import annotations

import functools
import html
import logging
import re
import uuid
from typing import TYPE_CHECKING, Optional

import gradio as gr

from sas_engine.errors import SASError
from sas_engine.query import RELEVANCE

from . import gaussians as app_gaussians
from .instances import INSTANCE_HEADERS
from .reports import capability_images, capability_plot, scene_metrics

if TYPE_CHECKING:  # pragma: no cover
    from .state import AppState

log = logging.getLogger(__name__)
VIEWER_HEIGHT = 620
OBJECT_HEADERS = ["#", "points", "mean relevance", "peak relevance", "centre (m)"]
METRIC_HEADERS = ["source", "mIoU %", "accuracy %", "coverage %"]


def warn(msg: str) -> str:
    return f"⚠️ {md_text(html.escape(msg))}"


def md_text(text: str) -> str:
    """Plain text (file names, scene ids, user queries) made safe inside gradio Markdown: underscores, asterisks and
    backticks are escaped so ``synth1001_00_fused_sas.ply`` is not turned into italics. Bold markers the handlers
    write (``**...**``) are kept."""
    out = re.sub(r"(?<!\\)([_`])", r"\\\1", text)
    return re.sub(r"(?<![*\\])\*(?!\*)", r"\\*", out)


def guarded(n_out: int):
    """Decorator: on SASError return (message, skip...) instead of raising; the message is the first output."""

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kw):
            try:
                out = fn(*args, **kw)
                if isinstance(out, tuple) and out and isinstance(out[0], str):
                    out = (md_text(html.escape(out[0], quote=False)),) + out[1:]  # messages echo user text
                return out
            except SASError as e:
                return (warn(str(e)),) + (gr.skip(),) * (n_out - 1)
            except Exception as e:  # keep the page alive; the terminal gets the traceback
                log.exception("handler %s failed", fn.__name__)
                return (warn(f"internal error in {fn.__name__}: {type(e).__name__}: {e}"),) + (gr.skip(),) * (n_out - 1)

        return wrapper

    return deco


class Panel:
    """Handlers bound to an :class:`~app.state.AppState` (and its viewer, when running)."""

    def __init__(self, state: "AppState"):
        self.state = state

    # -- page load ---------------------------------------------------------------------------------------------
    def viewer_html(self, token: str, host: Optional[str] = None) -> str:
        v = self.state.viewer
        if v is None:
            return "<div style='padding:1em'>3D viewer not running (panel-only mode).</div>"
        src = html.escape(v.url(token, host=host), quote=True)
        return (f"<iframe id='sas-viewer-frame' src=\"{src}\" style='width:100%;height:{VIEWER_HEIGHT}px;border:0;"
                "border-radius:6px' allow='fullscreen'></iframe>")

    def load(self, request: Optional[gr.Request] = None):
        """New tab: create its session, choose the first scene. Returns
        (status, token, viewer html, scene dropdown, build markdown) followed by :meth:`scene_outputs`."""
        raw = getattr(request, "session_hash", None) or uuid.uuid4().hex
        token = re.sub(r"[^A-Za-z0-9]", "", str(raw))[:64] or uuid.uuid4().hex
        host = None
        if self.state.viewer is not None and self.state.viewer.host in ("0.0.0.0", "::", ""):
            hdr = getattr(request, "headers", None) or {}
            host = str(hdr.get("host", "127.0.0.1")).rsplit(":", 1)[0] or "127.0.0.1"
        session = self.state.new_session(token)
        ids = self.state.scene_ids()
        session.known_scenes = ids
        msg = ""
        if ids and session.scene_id is None:
            try:
                msg = md_text(html.escape(session.select_scene(ids[0]), quote=False))
            except SASError as e:
                msg = warn(str(e))
        elif not ids:
            msg = "No scene loaded yet." + (" The demo is being built; the list fills in when it is ready."
                                           if self.state.build.running else "")
        return (msg, token, self.viewer_html(token, host),
                gr.update(choices=ids, value=session.scene_id), self.state.build.markdown()) \
            + self.scene_outputs(session)

    def unload(self, request: Optional[gr.Request] = None) -> None:
        raw = getattr(request, "session_hash", None)
        if raw:
            self.state.drop_session(re.sub(r"[^A-Za-z0-9]", "", str(raw))[:64])

    def scene_outputs(self, session) -> tuple:
        """(mode A, mode B, label set, query layer dropdown updates, legend, colour bar, objects, capability dd)."""
        modes = session.modes()
        qls = session.query_layers()
        caps = session.layers().capability_tables() if session.scene_id else []
        return (gr.update(choices=modes, value=session.mode_a),
                gr.update(choices=modes, value=session.mode_b),
                ", ".join(session.vocab),
                gr.update(choices=qls, value=session.query_layer),
                session.legend_html(), session.colorbar_html(), session.objects_rows(),
                gr.update(choices=caps, value=caps[0] if caps else None))

    # -- handlers ----------------------------------------------------------------------------------------------
    @guarded(9)
    def select_scene(self, token: str, scene_id: str):
        if not scene_id:  # the dropdown was cleared or filled programmatically with nothing: no message
            return ("",) + (gr.skip(),) * 8
        s = self.state.session(token)
        msg = s.select_scene(scene_id)
        return (msg,) + self.scene_outputs(s)

    @guarded(9)
    def open_folder(self, token: str, path: str):
        s = self.state.session(token)
        sid = self.state.add_scene_path(path, trust_pickle=False)  # the page never unpickles: a typed path is untrusted
        msg = s.select_scene(sid)
        return (msg, gr.update(choices=self.state.scene_ids(), value=sid)) + self.scene_outputs(s)[:7]

    @guarded(4)
    def set_modes(self, token: str, mode_a: str, compare: bool, mode_b: Optional[str]):
        s = self.state.session(token)
        msg = s.set_modes(mode_a, bool(compare), mode_b)
        return msg, s.legend_html(), s.colorbar_html(), s.objects_rows()

    @guarded(4)
    def set_vocab(self, token: str, vocab: str, template: str):
        s = self.state.session(token)
        msg = s.set_vocab(vocab, template)
        return msg, s.legend_html(), ", ".join(s.vocab), s.template

    @guarded(4)
    def query(self, token: str, text: str, threshold: float, topk: float, layer: Optional[str]):
        s = self.state.session(token)
        msg = s.run_query(text, threshold, int(topk) if topk is not None else None, layer or None)
        return msg, s.legend_html(), s.colorbar_html(), s.objects_rows()

    @guarded(4)
    def threshold(self, token: str, threshold: float, topk: float):
        s = self.state.session(token)
        msg = s.set_threshold(threshold, int(topk) if topk is not None else None)
        return msg, s.legend_html(), s.colorbar_html(), s.objects_rows()

    @guarded(4)
    def clear(self, token: str):
        s = self.state.session(token)
        msg = s.clear_query()
        return msg, s.legend_html(), s.colorbar_html(), s.objects_rows()

    @guarded(2)
    def instances(self, token: str, text: str, layer: Optional[str]):
        """'Find instances': ranked instances of the query text (boxes in the viewer) and a how-many line."""
        s = self.state.session(token)
        msg = s.find_instances(text, layer or None)
        return msg, s.instance_rows()

    @guarded(2)
    def frame_instance(self, token: str, evt: gr.SelectData):
        """A row of the instance table was clicked: frame the camera on that instance."""
        s = self.state.session(token)
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return s.frame_instance(int(row) + 1), gr.skip()

    @guarded(2)
    def clear_instances(self, token: str):
        s = self.state.session(token)
        return s.clear_instances(), []

    @guarded(2)
    def inspect(self, token: str, index):
        s = self.state.session(token)
        if index is None:
            return warn("type a point index or click a point in the 3D view"), gr.skip()
        md = s.inspect(index)
        return f"inspected point {int(index)}", md

    def poll(self, token: str, serial: int):
        """Timer tick: new click inspection and demo build progress. Returns (inspection, serial, build md, scenes)."""
        try:
            s = self.state.session(token)
        except SASError:
            return gr.skip(), serial, gr.skip(), gr.skip()
        with s.lock:  # the inspection text and its serial number are read together
            insp = (s.inspection, s.inspect_serial) if s.inspect_serial != serial else (gr.skip(), serial)
        b = self.state.build
        scenes = gr.skip()
        ids = self.state.scene_ids()
        if ids and ids != getattr(s, "known_scenes", None):  # e.g. the demo build finished
            s.known_scenes = ids
            scenes = gr.update(choices=ids, value=s.scene_id or ids[0])
        bm = b.markdown()
        bm_out = gr.skip() if bm == getattr(s, "build_seen", None) else bm
        s.build_seen = bm
        return insp[0], insp[1], bm_out, scenes

    def poll_layers(self, token: str):
        """Timer tick: when a background build added layers to the scene this tab shows (see
        :meth:`AppState.layers_changed`), offer them. Returns (status, mode A, mode B, query layer, capability dd)."""
        skip = (gr.skip(),) * 5
        try:
            s = self.state.session(token)
        except SASError:
            return skip
        with s.lock:
            key = (s.scene_id, self.state.layer_serial(s.scene_id))
            if s.scene_id is None or key == getattr(s, "layers_seen", None):
                return skip
            first = getattr(s, "layers_seen", None) is None or s.layers_seen[0] != s.scene_id
            s.layers_seen = key
            if first and key[1] == 0:  # never built while this process runs: the lists are what the tab chose
                return skip
            try:
                qls = s.query_layers()
                if s.query_layer not in {k for _, k in qls}:
                    s.query_layer = qls[0][1] if qls else None
                modes = s.modes()
                lay = s.layers()
                caps = lay.capability_tables()
                n, points = len(lay.usable()), lay.scene.num_points
            except SASError as e:
                return (warn(str(e)),) + skip[1:]
        sid = md_text(html.escape(str(s.scene_id), quote=False))
        msg = (f"Scene **{sid}**: {points:,} points, {n} feature layer(s)"
               + (" so far; the rest are being computed" if self.state.build.running else ""))
        return (msg, gr.update(choices=modes, value=s.mode_a), gr.update(choices=modes, value=s.mode_b),
                gr.update(choices=qls, value=s.query_layer), gr.update(choices=caps, value=caps[0] if caps else None))

    @guarded(4)
    def capability(self, token: str, name: Optional[str]):
        s = self.state.session(token)
        lay = s.layers()
        if not name:
            return "no capability table in the store yet", None, gr.update(choices=[], value=None), []
        table = lay.capability(name)
        img = capability_plot(table)
        root = self.state.store.root
        listed = {i.get("class") for i in table.get("images") or [] if isinstance(i, dict)}
        classes = [c for c in table["classes"] if c in listed and capability_images(table, root, c, limit=1)]
        note = (f"{len(table['teachers'])} teachers x {len(table['classes'])} classes"
                + ("" if classes else "; this table lists no synthesized images"))
        return note, img, gr.update(choices=classes, value=classes[0] if classes else None), \
            capability_images(table, root, classes[0]) if classes else []

    @guarded(2)
    def capability_class(self, token: str, name: Optional[str], cls: Optional[str]):
        s = self.state.session(token)
        if not name or not cls:
            return "", []
        table = s.layers().capability(name)
        return f"synthesized images of {cls}", capability_images(table, self.state.store.root, cls)

    @guarded(2)
    def metrics(self, token: str):
        s = self.state.session(token)
        rows, note = scene_metrics(self.state, s.layers(), s.template)
        return note, rows

    @guarded(2)
    def export(self, token: str):
        s = self.state.session(token)
        ply, txt, msg = s.export()
        return msg, [str(ply)] + ([str(txt)] if txt else [])


def build_blocks(state: "AppState") -> gr.Blocks:
    """The gradio page (not launched)."""
    p = Panel(state)
    # gradio's own temporary files (capability plots and galleries) older than an hour are deleted every hour
    with gr.Blocks(title="SAS - Segment Any 3D Scene", delete_cache=(3600, 3600)) as demo:
        token = gr.State("")
        serial = gr.State(0)
        gr.Markdown("## SAS: Segment Any 3D Scene with Integrated 2D Priors")
        build_md = gr.Markdown(state.build.markdown(), elem_id="sas-build")
        status = gr.Markdown("", elem_id="sas-status")
        with gr.Row():
            with gr.Column(scale=7):  # the 3D view gets most of the width: side-by-side views stay readable
                viewer = gr.HTML("", elem_id="sas-viewer")
                legend = gr.HTML("", elem_id="sas-legend")
            with gr.Column(scale=4):
                with gr.Tab("Scene"):
                    scene_dd = gr.Dropdown(label="Scene", choices=state.scene_ids(), elem_id="sas-scene")
                    with gr.Row():
                        folder = gr.Textbox(label="Open a scene folder (inside the data roots)", scale=4)
                        open_btn = gr.Button("Open", scale=1)
                    mode_a = gr.Dropdown(label="Colour mode", elem_id="sas-mode-a")
                    compare = gr.Checkbox(label="Side-by-side comparison", elem_id="sas-compare")
                    mode_b = gr.Dropdown(label="Compare with (right)", elem_id="sas-mode-b")
                    vocab = gr.Textbox(label="Label set (comma-separated, editable)", lines=3, elem_id="sas-vocab")
                    template = gr.Textbox(label="Prompt template", value=state.template)
                    vocab_btn = gr.Button("Apply label set")
                with gr.Tab("Query"):
                    gr.Markdown("One text gives a heat map of its **relevance**: the probability (0 to 1) that a "
                                "point is what the text names rather than another label of the label set, on the "
                                "same scale in every scene, so an object that is not there leaves the map empty. "
                                "Several comma-separated names give a labelled segmentation; points that match none "
                                "of them stay grey.")
                    query = gr.Textbox(label="Query", placeholder="somewhere to sit   or   chair, sofa, lamp",
                                       elem_id="sas-query")
                    query_btn = gr.Button("Search", variant="primary", elem_id="sas-query-btn")
                    with gr.Row():  # "where is it?" / "how many chairs?": objects with boxes (app/instances.py)
                        inst_btn = gr.Button("Find instances", elem_id="sas-instances-btn", scale=2)
                        inst_clear = gr.Button("Clear boxes", scale=1)
                    inst_df = gr.Dataframe(headers=INSTANCE_HEADERS, value=[], interactive=False,
                                           label="Instances of the query, best first (click a row to frame it)",
                                           elem_id="sas-instances")
                    with gr.Row():  # the scene's 3D Gaussians as splats, coloured by the query (app/gaussians.py)
                        gs_btn = gr.Button("Show Gaussians", elem_id="sas-gaussians-btn", scale=2)
                        gs_hide = gr.Button("Hide Gaussians", scale=1)
                    qlayer = gr.Dropdown(label="Features queried", elem_id="sas-qlayer")
                    threshold = gr.Slider(0, 1, value=RELEVANCE.threshold, step=0.01,
                                          label="Threshold (relevance; points below it stay grey)",
                                          elem_id="sas-threshold")
                    topk = gr.Slider(1, 20, value=5, step=1, label="Top-k regions")
                    clear_btn = gr.Button("Clear query")
                    colorbar = gr.HTML("", elem_id="sas-colorbar")
                    objects = gr.Dataframe(headers=OBJECT_HEADERS, value=[], interactive=False, label="Top regions")
                with gr.Tab("Inspect"):
                    gr.Markdown("Click a point in the 3D view (the result also appears in the viewer), "
                                "or type a point index.")
                    with gr.Row():
                        pidx = gr.Number(label="Point index", precision=0, scale=3)
                        inspect_btn = gr.Button("Inspect", scale=1)
                    inspect_md = gr.Markdown("", elem_id="sas-inspect")
                with gr.Tab("Capability"):
                    cap_dd = gr.Dropdown(label="Capability table")
                    cap_note = gr.Markdown("")
                    cap_plot = gr.Image(label="Per-teacher per-class capability", type="numpy", interactive=False)
                    cap_class = gr.Dropdown(label="Synthesized images of class")
                    cap_gallery = gr.Gallery(label="Synthesized images with pseudo masks (red)", columns=3)
                with gr.Tab("Metrics"):
                    metrics_btn = gr.Button("Compute metrics for this scene")
                    metrics_note = gr.Markdown("")
                    metrics_df = gr.Dataframe(headers=METRIC_HEADERS, value=[], interactive=False)
                with gr.Tab("Export"):
                    export_btn = gr.Button("Export the current colouring (PLY + ScanNet benchmark labels)")
                    export_files = gr.File(label="Files", file_count="multiple", interactive=False)
        timer = gr.Timer(1.0)

        scene_outs = [mode_a, mode_b, vocab, qlayer, legend, colorbar, objects, cap_dd]
        demo.load(p.load, None, [status, token, viewer, scene_dd, build_md] + scene_outs)
        demo.unload(p.unload)
        scene_dd.change(p.select_scene, [token, scene_dd], [status] + scene_outs)
        open_btn.click(p.open_folder, [token, folder], [status, scene_dd] + scene_outs[:7])
        for comp in (mode_a, compare, mode_b):
            comp.input(p.set_modes, [token, mode_a, compare, mode_b], [status, legend, colorbar, objects])
        vocab_btn.click(p.set_vocab, [token, vocab, template], [status, legend, vocab, template])
        for ev in (query_btn.click, query.submit):
            ev(p.query, [token, query, threshold, topk, qlayer], [status, legend, colorbar, objects])
        for comp in (threshold, topk):
            comp.release(p.threshold, [token, threshold, topk], [status, legend, colorbar, objects])
        clear_btn.click(p.clear, [token], [status, legend, colorbar, objects])
        inst_btn.click(p.instances, [token, query, qlayer], [status, inst_df])
        inst_df.select(p.frame_instance, [token], [status, inst_df])
        inst_clear.click(p.clear_instances, [token], [status, inst_df])
        gs_btn.click(guarded(1)(lambda t, q: (app_gaussians.show(state, t, q),)), [token, query], [status])
        gs_hide.click(guarded(1)(lambda t: (app_gaussians.hide(state, t),)), [token], [status])
        inspect_btn.click(p.inspect, [token, pidx], [status, inspect_md])
        timer.tick(p.poll, [token, serial], [inspect_md, serial, build_md, scene_dd], show_progress="hidden")
        layers_timer = gr.Timer(2.0)  # new layers of the shown scene from a background build (app.build)
        layers_timer.tick(p.poll_layers, [token], [status, mode_a, mode_b, qlayer, cap_dd], show_progress="hidden")
        cap_dd.change(p.capability, [token, cap_dd], [cap_note, cap_plot, cap_class, cap_gallery])
        cap_class.input(p.capability_class, [token, cap_dd, cap_class], [cap_note, cap_gallery])
        metrics_btn.click(p.metrics, [token], [metrics_note, metrics_df])
        export_btn.click(p.export, [token], [status, export_files])
    demo.panel = p  # for tests and the launcher
    return demo

