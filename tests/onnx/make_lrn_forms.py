"""Writes models in the forms PyTorch's exporters give nn.LocalResponseNorm
and a flatten's computed shape, built with onnx's helper API node for node
as torch 2.15 writes them (so no PyTorch is needed):

    make_lrn_forms.py OUT_DIR

Each is Conv(3 -> 8, 5x5) -> Relu -> LRN(size, alpha 1e-4, beta 0.75, k 2)
-> MaxPool(2) -> a flatten -> Gemm(10), on N x 3 x 16 x 16 with N dynamic:

- lrn-torchscript.onnx: the TorchScript exporter's form (opset 17): x*x;
  Reshape to [N, 1, C, H, -1] from Shape/Gather/Unsqueeze/Concat; the pads
  built by ConstantOfShape/Concat/Reshape/Slice/Transpose/Reshape/Cast;
  Pad; AveragePool [size, 1, 1]; an If on Shape/Gather/Equal that squeezes
  axis 1; Reshape back from Shape/Gather/Unsqueeze/Concat; Mul alpha, Add k,
  Pow beta; Div. Then MaxPool and Flatten.
- lrn-dynamo.onnx: the dynamo exporter's form (opset 18): x*x, Reshape to
  [-1, 1, C, H, W], Pad, AveragePool, Squeeze, Mul, Add, Pow, Div; the
  flatten a Reshape whose shape is computed with Shape, Slice, Cast,
  Gather, Mul, Div, Add, Sub, Squeeze, Unsqueeze, ConstantOfShape and
  Concat, the batch kept as a symbol.
- lrn-even.onnx: the dynamo form with size 4 (pads 2 before a channel and
  1 after): not centred, which netc's lrn is, so it is refused.
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

C, H, W = 8, 12, 12  # after the 5x5 conv of 16x16


def const(nodes, name, value):
    nodes.append(helper.make_node("Constant", [], [name], name=f"/{name}/Constant",
                                  value=numpy_helper.from_array(np.asarray(value), name)))
    return name


def lrn_torchscript(nodes, x, size, alpha, beta, k):
    """torch.onnx.export(..., dynamo=False, opset_version=17) of
    local_response_norm with a dynamic batch, node for node."""
    p = "/lrn/"
    nodes.append(helper.make_node("Mul", [x, x], [p + "Mul_output_0"], name=p + "Mul"))
    dims = []
    for i in range(4):
        nodes.append(helper.make_node("Shape", [x], [p + f"Shape_{i}"], name=p + f"Shape_{i}"))
        const(nodes, p + f"Constant_g{i}", np.array(i, np.int64))
        nodes.append(helper.make_node("Gather", [p + f"Shape_{i}", p + f"Constant_g{i}"],
                                      [p + f"Gather_{i}"], name=p + f"Gather_{i}", axis=0))
        dims.append(p + f"Gather_{i}")

    def unsq(v, tag):
        a = const(nodes, p + f"axes_{tag}", np.array([0], np.int64))
        nodes.append(helper.make_node("Unsqueeze", [v, a], [p + f"Unsqueeze_{tag}"],
                                      name=p + f"Unsqueeze_{tag}"))
        return p + f"Unsqueeze_{tag}"

    one = const(nodes, p + "one", np.array([1], np.int64))
    minus1 = const(nodes, p + "minus1", np.array([-1], np.int64))
    nodes.append(helper.make_node(
        "Concat", [unsq(dims[0], "a"), one, unsq(dims[1], "b"), unsq(dims[2], "c"), minus1],
        [p + "Concat_output_0"], name=p + "Concat", axis=0))
    nodes.append(helper.make_node("Reshape", [p + "Mul_output_0", p + "Concat_output_0"],
                                  [p + "Reshape_output_0"], name=p + "Reshape", allowzero=0))
    const(nodes, p + "Constant_6", np.array([4], np.int64))
    const(nodes, p + "Constant_7", np.array([0, 0, 0, 0, size // 2, (size - 1) // 2], np.int64))
    nodes.append(helper.make_node("ConstantOfShape", [p + "Constant_6"], [p + "ConstantOfShape"],
                                  name=p + "ConstantOfShape",
                                  value=numpy_helper.from_array(np.array([0], np.int64))))
    nodes.append(helper.make_node("Concat", [p + "Constant_7", p + "ConstantOfShape"],
                                  [p + "Concat_1"], name=p + "Concat_1", axis=0))
    const(nodes, p + "Constant_8", np.array([-1, 2], np.int64))
    nodes.append(helper.make_node("Reshape", [p + "Concat_1", p + "Constant_8"],
                                  [p + "Reshape_1"], name=p + "Reshape_1", allowzero=0))
    const(nodes, p + "Constant_9", np.array([0], np.int64))
    const(nodes, p + "Constant_10", np.array([-1], np.int64))
    const(nodes, p + "Constant_11", np.array([-9223372036854775807], np.int64))
    const(nodes, p + "Constant_12", np.array([-1], np.int64))
    nodes.append(helper.make_node(
        "Slice", [p + "Reshape_1", p + "Constant_10", p + "Constant_11", p + "Constant_9",
                  p + "Constant_12"], [p + "Slice"], name=p + "Slice"))
    nodes.append(helper.make_node("Transpose", [p + "Slice"], [p + "Transpose"],
                                  name=p + "Transpose", perm=[1, 0]))
    const(nodes, p + "Constant_13", np.array([-1], np.int64))
    nodes.append(helper.make_node("Reshape", [p + "Transpose", p + "Constant_13"],
                                  [p + "Reshape_2"], name=p + "Reshape_2", allowzero=0))
    nodes.append(helper.make_node("Cast", [p + "Reshape_2"], [p + "Cast"], name=p + "Cast",
                                  to=TensorProto.INT64))
    nodes.append(helper.make_node("Pad", [p + "Reshape_output_0", p + "Cast", ""], [p + "Pad"],
                                  name=p + "Pad", mode="constant"))
    nodes.append(helper.make_node("AveragePool", [p + "Pad"], [p + "AveragePool"],
                                  name=p + "AveragePool", ceil_mode=0, count_include_pad=1,
                                  kernel_shape=[size, 1, 1], pads=[0] * 6, strides=[1, 1, 1]))
    const(nodes, p + "Constant_14", np.array([1], np.int64))
    nodes.append(helper.make_node("Shape", [p + "AveragePool"], [p + "Shape_4"],
                                  name=p + "Shape_4"))
    nodes.append(helper.make_node("Gather", [p + "Shape_4", p + "Constant_14"], [p + "Gather_4"],
                                  name=p + "Gather_4", axis=0))
    const(nodes, p + "Constant_15", np.array([1], np.int64))
    nodes.append(helper.make_node("Equal", [p + "Gather_4", p + "Constant_15"], [p + "Equal"],
                                  name=p + "Equal"))
    then_g = helper.make_graph(
        [helper.make_node("Constant", [], [p + "Constant_16"], name=p + "Constant_16",
                          value=numpy_helper.from_array(np.array([1], np.int64))),
         helper.make_node("Squeeze", [p + "AveragePool", p + "Constant_16"], [p + "Squeeze"],
                          name=p + "Squeeze")],
        "sub_graph", [], [helper.make_tensor_value_info(p + "Squeeze", TensorProto.FLOAT, None)])
    else_g = helper.make_graph(
        [helper.make_node("Identity", [p + "AveragePool"], [p + "Identity"], name=p + "Identity")],
        "sub_graph1", [], [helper.make_tensor_value_info(p + "Identity", TensorProto.FLOAT, None)])
    nodes.append(helper.make_node("If", [p + "Equal"], [p + "If"], name=p + "If",
                                  then_branch=then_g, else_branch=else_g))
    nodes.append(helper.make_node(
        "Concat", [unsq(d, f"back{i}") for i, d in enumerate(dims)], [p + "Concat_2"],
        name=p + "Concat_2", axis=0))
    nodes.append(helper.make_node("Reshape", [p + "If", p + "Concat_2"], [p + "Reshape_3"],
                                  name=p + "Reshape_3", allowzero=0))
    tail(nodes, x, p + "Reshape_3", alpha, beta, k)
    return p + "Div"


def tail(nodes, x, mean, alpha, beta, k):
    p = "/lrn/"
    const(nodes, p + "alpha", np.array(alpha, np.float32))
    nodes.append(helper.make_node("Mul", [mean, p + "alpha"], [p + "Mul_1"], name=p + "Mul_1"))
    const(nodes, p + "k", np.array(k, np.float32))
    nodes.append(helper.make_node("Add", [p + "Mul_1", p + "k"], [p + "Add"], name=p + "Add"))
    const(nodes, p + "beta", np.array(beta, np.float32))
    nodes.append(helper.make_node("Pow", [p + "Add", p + "beta"], [p + "Pow"], name=p + "Pow"))
    nodes.append(helper.make_node("Div", [x, p + "Pow"], [p + "Div"], name=p + "Div"))


def lrn_dynamo(nodes, inits, x, size, alpha, beta, k):
    """torch.onnx.export(...) (dynamo) of local_response_norm, node for node."""
    p = "/lrn/"
    inits.append(numpy_helper.from_array(np.array([-1, 1, C, H, W], np.int64), "val_24"))
    inits.append(numpy_helper.from_array(
        np.array([0, 0, size // 2, 0, 0, 0, 0, (size - 1) // 2, 0, 0], np.int64), "val_8"))
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "val_9"))
    nodes += [
        helper.make_node("Mul", [x, x], [p + "mul"], name="node_mul"),
        helper.make_node("Reshape", [p + "mul", "val_24"], [p + "view"], name="node_view",
                         allowzero=1),
        helper.make_node("Pad", [p + "view", "val_8"], [p + "pad"], name="node_pad",
                         mode="constant"),
        helper.make_node("AveragePool", [p + "pad"], [p + "avg"], name="node_avg_pool3d",
                         count_include_pad=1, ceil_mode=0, pads=[0] * 6, auto_pad="NOTSET",
                         strides=[1, 1, 1], kernel_shape=[size, 1, 1]),
        helper.make_node("Squeeze", [p + "avg", "val_9"], [p + "squeeze"], name="node_squeeze"),
    ]
    tail(nodes, x, p + "squeeze", alpha, beta, k)
    return p + "Div"


def computed_flatten(nodes, v):
    """A Reshape of v to [N, C*H*W], the shape computed from v's shape
    with the folded operators (the batch a symbol throughout)."""
    p = "/flat/"
    nodes.append(helper.make_node("Shape", [v], [p + "s"], name=p + "Shape"))
    const(nodes, p + "two", np.array([2], np.int64))
    const(nodes, p + "four", np.array([4], np.int64))
    nodes.append(helper.make_node("Slice", [p + "s", p + "two", p + "four"], [p + "hw"],
                                  name=p + "Slice"))
    nodes.append(helper.make_node("Cast", [p + "hw"], [p + "hwf"], name=p + "Cast",
                                  to=TensorProto.FLOAT))
    const(nodes, p + "i0", np.array(0, np.int64))
    const(nodes, p + "i1", np.array(1, np.int64))
    nodes.append(helper.make_node("Gather", [p + "hwf", p + "i0"], [p + "h"], name=p + "G_h",
                                  axis=0))
    nodes.append(helper.make_node("Gather", [p + "hwf", p + "i1"], [p + "w"], name=p + "G_w",
                                  axis=0))
    nodes.append(helper.make_node("Mul", [p + "h", p + "w"], [p + "area"], name=p + "Mul_hw"))
    nodes.append(helper.make_node("Gather", [p + "s", p + "i1"], [p + "c"], name=p + "G_c",
                                  axis=0))
    nodes.append(helper.make_node("Cast", [p + "c"], [p + "cf"], name=p + "Cast_c",
                                  to=TensorProto.FLOAT))
    nodes.append(helper.make_node("Mul", [p + "cf", p + "area"], [p + "k1"], name=p + "Mul_k"))
    const(nodes, p + "f2", np.array(2.0, np.float32))
    nodes.append(helper.make_node("Mul", [p + "k1", p + "f2"], [p + "k2"], name=p + "Mul_2"))
    nodes.append(helper.make_node("Div", [p + "k2", p + "f2"], [p + "k3"], name=p + "Div_2"))
    const(nodes, p + "f1", np.array(1.0, np.float32))
    nodes.append(helper.make_node("Add", [p + "k3", p + "f1"], [p + "k4"], name=p + "Add_1"))
    nodes.append(helper.make_node("Sub", [p + "k4", p + "f1"], [p + "k5"], name=p + "Sub_1"))
    nodes.append(helper.make_node("Cast", [p + "k5"], [p + "ki"], name=p + "Cast_k",
                                  to=TensorProto.INT64))
    const(nodes, p + "ax0", np.array([0], np.int64))
    nodes.append(helper.make_node("Unsqueeze", [p + "ki", p + "ax0"], [p + "kv"],
                                  name=p + "Unsqueeze_k"))
    # The batch: s[0:1], squeezed, unsqueezed, plus a zero from ConstantOfShape.
    const(nodes, p + "zero1", np.array([0], np.int64))
    nodes.append(helper.make_node("Slice", [p + "s", p + "zero1", p + "ax0"], [p + "empty"],
                                  name=p + "Slice_empty"))
    const(nodes, p + "one1", np.array([1], np.int64))
    nodes.append(helper.make_node("Slice", [p + "s", p + "zero1", p + "one1"], [p + "n1"],
                                  name=p + "Slice_n"))
    nodes.append(helper.make_node("Squeeze", [p + "n1", p + "ax0"], [p + "n"],
                                  name=p + "Squeeze_n"))
    nodes.append(helper.make_node("Unsqueeze", [p + "n", p + "ax0"], [p + "nv"],
                                  name=p + "Unsqueeze_n"))
    nodes.append(helper.make_node("ConstantOfShape", [p + "one1"], [p + "z"],
                                  name=p + "ConstantOfShape",
                                  value=numpy_helper.from_array(np.array([0], np.int64))))
    nodes.append(helper.make_node("Add", [p + "nv", p + "z"], [p + "nz"], name=p + "Add_n"))
    nodes.append(helper.make_node("Concat", [p + "nz", p + "empty", p + "kv"], [p + "shape"],
                                  name=p + "Concat", axis=0))
    nodes.append(helper.make_node("Reshape", [v, p + "shape"], [p + "out"], name=p + "Reshape"))
    return p + "out"


def build(form, size):
    rng = np.random.default_rng(26 + size)
    w = rng.standard_normal((C, 3, 5, 5)).astype(np.float32) * 0.3
    b = rng.standard_normal(C).astype(np.float32) * 0.1
    fw = rng.standard_normal((10, C * (H // 2) * (W // 2))).astype(np.float32) * 0.05
    fb = rng.standard_normal(10).astype(np.float32) * 0.1
    inits = [numpy_helper.from_array(w, "c1.weight"), numpy_helper.from_array(b, "c1.bias"),
             numpy_helper.from_array(fw, "fc.weight"), numpy_helper.from_array(fb, "fc.bias")]
    nodes = [
        helper.make_node("Conv", ["x", "c1.weight", "c1.bias"], ["conv"], name="/c1/Conv",
                         kernel_shape=[5, 5], pads=[0, 0, 0, 0], strides=[1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"], name="/Relu"),
    ]
    if form == "torchscript":
        y = lrn_torchscript(nodes, "relu", size, 1e-4, 0.75, 2.0)
    else:
        y = lrn_dynamo(nodes, inits, "relu", size, 1e-4, 0.75, 2.0)
    nodes.append(helper.make_node("MaxPool", [y], ["pool"], name="/p/MaxPool",
                                  kernel_shape=[2, 2], strides=[2, 2]))
    if form == "torchscript":
        nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], name="/Flatten", axis=1))
        flat = "flat"
    else:
        flat = computed_flatten(nodes, "pool")
    nodes.append(helper.make_node("Gemm", [flat, "fc.weight", "fc.bias"], ["logits"],
                                  name="/fc/Gemm", transB=1))
    graph = helper.make_graph(
        nodes, f"lrn_{form}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    opset = 17 if form == "torchscript" else 18
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="pytorch")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    out = sys.argv[1]
    for name, form, size in [("lrn-torchscript", "torchscript", 5), ("lrn-dynamo", "dynamo", 5),
                             ("lrn-even", "dynamo", 4)]:
        path = os.path.join(out, f"{name}.onnx")
        onnx.save_model(build(form, size), path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
