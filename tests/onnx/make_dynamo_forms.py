"""Writes a model in the forms PyTorch's default (dynamo, opset 18) exporter
uses, built with onnx's helper API (so no PyTorch is needed):

    make_dynamo_forms.py OUT_DIR

OUT_DIR/dynamo-forms.onnx: Conv -> Relu -> MaxPool (ceil_mode 1, where it
rounds as floor mode) -> ReduceMean over H and W with keepdims (axes as an
input: AdaptiveAvgPool2d(1)) -> Reshape to [N, C], the shape computed from
the dynamic batch by Shape/Gather/Unsqueeze/Concat -> Gemm. Its weights lie
in OUT_DIR/dynamo-forms.onnx.data (ONNX external data; the
small integer tensors stay inline, as the exporter keeps them).
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(26)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3
    b = rng.standard_normal(8).astype(np.float32) * 0.1
    fw = rng.standard_normal((10, 8)).astype(np.float32) * 0.3
    fb = rng.standard_normal(10).astype(np.float32) * 0.1
    inits = [
        numpy_helper.from_array(w, "conv.weight"),
        numpy_helper.from_array(b, "conv.bias"),
        numpy_helper.from_array(fw, "fc.weight"),
        numpy_helper.from_array(fb, "fc.bias"),
        numpy_helper.from_array(np.array([2, 3], np.int64), "hw"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="/conv/Conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="/relu/Relu"),
        # 15 + 0 - 3 = 12, a multiple of the stride: ceil and floor agree.
        helper.make_node("MaxPool", ["r"], ["p"], name="/pool/MaxPool",
                         kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
        helper.make_node("ReduceMean", ["p", "hw"], ["m"], name="/avgpool/ReduceMean", keepdims=1),
        helper.make_node("Shape", ["m"], ["s"], name="/Shape"),
        helper.make_node("Gather", ["s", "zero"], ["n"], name="/Gather", axis=0),
        helper.make_node("Unsqueeze", ["n", "axis0"], ["n1"], name="/Unsqueeze"),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], name="/Concat", axis=0),
        helper.make_node("Reshape", ["m", "shape"], ["flat"], name="/Reshape"),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="/fc/Gemm",
                         transB=1),
    ]
    graph = helper.make_graph(
        nodes, "dynamo_forms",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 15, 15])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)],
                              producer_name="dynamo-forms")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    path = os.path.join(out, "dynamo-forms.onnx")
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="dynamo-forms.onnx.data", size_threshold=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
