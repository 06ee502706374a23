"""Label maps in CVAT's serverless form: the ``spec`` list of a nuclio function.yaml, as JSON or in the
whole function.yaml, accepted wherever a label map is (registration through the API and the
dashboard's form, which posts the file, and ``prelabel script run --labels``), with clear refusals."""

from __future__ import annotations

import json

import pytest
from browsing import log_in, needs_chromium

from cluster.errors import InvalidInput
from cluster.models.labels import parse_label_map

# Modelled on CVAT's serverless/openvino/omz/public/faster_rcnn_inception_resnet_v2_atrous_coco/nuclio/
# function.yaml: the labels are a JSON string in metadata.annotations.spec (newer functions add a
# "type" and "attributes" per label), ids as the model numbers its classes.
FUNCTION_YAML = """\
metadata:
  name: openvino-omz-public-faster_rcnn_inception_resnet_v2_atrous_coco
  namespace: cvat
  annotations:
    name: Faster RCNN
    type: detector
    framework: openvino
    spec: |
      [
        { "id": 1, "name": "person", "type": "rectangle" },
        { "id": 2, "name": "bicycle", "type": "rectangle" },
        { "id": 3, "name": "car", "type": "rectangle", "attributes": [] },
        { "id": 90, "name": "toothbrush" }
      ]

spec:
  description: Faster RCNN inception resnet v2 atrous via Intel OpenVINO toolkit
  runtime: 'python:3.8'
  handler: main:handler
  eventTimeout: 30s
  env:
    - name: NUCLIO_PYTHON_EXE_PATH
      value: /opt/nuclio/common/openvino/python3

  build:
    image: cvat.openvino.omz.public.faster_rcnn_inception_resnet_v2_atrous_coco
    baseImage: openvino/ubuntu20_dev:2022.3.0
    directives:
      preCopy:
        - kind: USER
          value: root
        - kind: WORKDIR
          value: /opt/nuclio
        - kind: RUN
          value: ln -s /usr/bin/pip3 /usr/bin/pip
      postCopy:
        - kind: USER
          value: openvino

  triggers:
    myHttpTrigger:
      maxWorkers: 2
      kind: 'http'
      workerAvailabilityTimeoutMilliseconds: 10000
      attributes:
        maxRequestBodySize: 33554432 # 32MB

  platform:
    attributes:
      restartPolicy:
        name: always
        maximumRetryCount: 3
      mountMode: volume
"""

EXPECTED = {"1": "person", "2": "bicycle", "3": "car", "90": "toothbrush"}


def test_a_cvat_function_yaml_gives_its_spec_labels_by_id():
    assert parse_label_map(FUNCTION_YAML.encode()) == EXPECTED


def test_the_spec_list_as_json_gives_the_same_map_as_cvats_label_map_form():
    spec = [{"id": int(k), "name": v} for k, v in EXPECTED.items()]
    assert parse_label_map(json.dumps(spec).encode()) == EXPECTED
    assert parse_label_map(json.dumps({"label_map": EXPECTED}).encode()) == EXPECTED


@pytest.mark.parametrize("spec, message", [
    ([{"id": 1, "name": "a"}, {"id": 1, "name": "b"}], "appears twice"),
    ([{"id": 1, "name": "a"}, {"id": 2}], "entry 2 .id 2. has no name"),
    ([{"id": 1, "name": "  "}], "non-empty name"),
    ([{"name": "a"}], "entry 1 .'a'. has no id"),
    ([{"id": "one", "name": "a"}], "'one' is not an integer"),
    ([{"id": 1.5, "name": "a"}], "entry 1. is not an integer"),
    ([{"id": True, "name": "a"}], "not an integer"),
    ([{"id": 300, "name": "a"}], "between 0 and 255"),
    (["person"], "entry 1 must be an object"),
    ([], "empty"),
])
def test_a_bad_spec_list_is_refused_naming_the_entry(spec, message):
    with pytest.raises(InvalidInput, match=message):
        parse_label_map(json.dumps(spec).encode())


def test_a_function_yaml_without_labels_or_with_a_broken_spec_is_refused_clearly():
    no_spec = FUNCTION_YAML.replace("    spec: |", "    notspec: |")
    with pytest.raises(InvalidInput, match="no metadata.annotations.spec"):
        parse_label_map(no_spec.encode())
    broken = FUNCTION_YAML.replace('{ "id": 2, "name": "bicycle", "type": "rectangle" },', '{ "id": 2, "name": ')
    with pytest.raises(InvalidInput, match="spec of the function.yaml is not valid JSON"):
        parse_label_map(broken.encode())
    duplicate = FUNCTION_YAML.replace('"id": 90', '"id": 3')
    with pytest.raises(InvalidInput, match="appears twice"):
        parse_label_map(duplicate.encode())
    with pytest.raises(InvalidInput, match="not valid JSON .* nor a CVAT function.yaml"):
        parse_label_map(b"person: 1")


def test_prelabel_script_run_reads_a_function_yaml_as_its_labels(tmp_path):
    from cluster.cli.script import _load_labels

    path = tmp_path / "function.yaml"
    path.write_text(FUNCTION_YAML)
    assert _load_labels(str(path)) == EXPECTED


@needs_chromium
def test_the_dashboards_model_form_registers_a_model_with_a_function_yaml(page, cluster, tmp_path):
    """The form posts the chosen file as it is; the server reads the function.yaml's labels."""
    from cluster_fixtures import new_user, tiny_model
    from playwright.sync_api import expect

    _, client = new_user(cluster)
    xml, bin_ = tiny_model(tmp_path)
    log_in(page, client.token, "/models")
    page.fill("#r-name", "faster-rcnn-labels")
    for field, name, data in [("#r-model", xml.name, xml.read_bytes()), ("#r-weights", bin_.name, bin_.read_bytes()),
                              ("#r-labels", "function.yaml", FUNCTION_YAML.encode()),
                              ("#r-script", "interp.py", b"def interpret(outputs, frame, labels, context):\n"
                                                         b"    return []\n")]:
        page.set_input_files(field, files=[{"name": name, "mimeType": "application/octet-stream", "buffer": data}])
    expect(page.locator("#labels-error")).to_be_hidden()
    page.click("#register-submit")
    expect(page.locator("#register-status")).to_have_text("Registered model faster-rcnn-labels.", timeout=120_000)
    expect(page.locator("#models tr[data-name=faster-rcnn-labels] .labels")).to_have_text(
        "person, bicycle, car, toothbrush")
    assert client.get("/api/models/faster-rcnn-labels")["labels"] == EXPECTED
