"""Writes ONNX's backend node conformance cases where netc's test reads them:

    node_cases.py OUT_DIR

The onnx package's wheel ships onnx/backend/test/data/{pytorch-converted,
pytorch-operator,simple,...} but not data/node; the node cases are made
from their definitions (onnx.backend.test.case.node, the same `expect`
calls ONNX's own repository writes data/node with). Where the package
has data/node, it is copied as is. Each case becomes
OUT_DIR/node/NAME/model.onnx and test_data_set_0/input_J.pb, output_J.pb
(tensors only: cases with sequence, map or optional values are left out).
Prints how many cases it wrote.
"""

import os
import shutil
import sys
import warnings

import onnx
from onnx import numpy_helper


def main():
    out = os.path.join(sys.argv[1], "node")
    shipped = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
    if os.path.isdir(shipped):
        shutil.copytree(shipped, out, dirs_exist_ok=True)
        print(f"copied {len(os.listdir(out))} cases")
        return
    warnings.simplefilter("ignore")
    from onnx.backend.test.case import node

    n = 0
    for case in node.collect_testcases():
        if case.kind != "node" or not case.model or not case.data_sets:
            continue
        g = case.model.graph
        if not all(v.type.HasField("tensor_type") for v in list(g.input) + list(g.output)):
            continue
        d = os.path.join(out, case.name)
        os.makedirs(os.path.join(d, "test_data_set_0"), exist_ok=True)
        with open(os.path.join(d, "model.onnx"), "wb") as f:
            f.write(case.model.SerializeToString())
        inputs, outputs = case.data_sets[0]
        for kind, values, infos in (("input", inputs, g.input), ("output", outputs, g.output)):
            for j, v in enumerate(values):
                t = v if isinstance(v, onnx.TensorProto) else numpy_helper.from_array(v, infos[j].name)
                with open(os.path.join(d, "test_data_set_0", f"{kind}_{j}.pb"), "wb") as f:
                    f.write(t.SerializeToString())
        n += 1
    print(f"wrote {n} cases")


if __name__ == "__main__":
    main()
