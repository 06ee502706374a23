"""Reading, preprocessing, devices and the inference engine, on tiny models built with opset13."""

from __future__ import annotations

import threading
import time

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from cluster.errors import DeviceUnavailable, InvalidInput, ModelError
from cluster.models import (
    EngineCache,
    InferenceEngine,
    Preprocessing,
    apply_preprocessing,
    available_devices,
    read_model,
    require_device,
    save_ir,
)
from cluster.models.devices import device_matches
from cluster.models.reading import describe_openvino_error


# -- tiny models ------------------------------------------------------------------------------------
def channel_means_model(shape=(1, 3, 8, 8), layout="NCHW") -> ov.Model:
    """Output ``means`` [1, C]: each channel's mean over the image the model receives."""
    x = ops.parameter(list(shape), np.float32, name="image")
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    result = ops.result(ops.reduce_mean(x, ops.constant(np.array(axes, np.int64)), keep_dims=False))
    result.output(0).get_tensor().set_names({"means"})
    return ov.Model([result], [x], "channel_means")


def identity_model(shape, name="pixels") -> ov.Model:
    x = ops.parameter(list(shape), np.float32, name="image")
    result = ops.result(ops.relu(x))
    result.output(0).get_tensor().set_names({name})
    return ov.Model([result], [x], "identity")


def echo_model(shape, name="pixels") -> ov.Model:
    """Outputs exactly what it receives, negative values included (``identity_model`` is a ReLU)."""
    x = ops.parameter(list(shape), np.float32, name="image")
    result = ops.result(ops.multiply(x, ops.constant(np.float32(1.0))))
    result.output(0).get_tensor().set_names({name})
    return ov.Model([result], [x], "echo")


def solid(height, width, rgb) -> np.ndarray:
    image = np.empty((height, width, 3), np.uint8)
    image[...] = np.asarray(rgb, np.uint8)
    return image


class FakeCore:
    def __init__(self, devices):
        self.available_devices = devices


# -- reading ------------------------------------------------------------------------------------------
def test_saved_ir_reads_back_with_the_same_inputs_outputs_and_results(tmp_path):
    model = channel_means_model()
    xml_path, bin_path = save_ir(model, tmp_path / "ir")
    assert xml_path.name == "model.xml" and bin_path.is_file()
    back = read_model(ov.Core(), xml_path)
    assert [o.get_any_name() for o in back.outputs] == ["means"]
    assert list(back.inputs[0].get_shape()) == [1, 3, 8, 8]
    data = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)
    out = ov.Core().compile_model(back, "CPU")(data)[0]
    np.testing.assert_allclose(out, data.mean(axis=(2, 3)), rtol=1e-5)


def test_reading_ir_with_weights_given_explicitly(tmp_path):
    xml_path, bin_path = save_ir(channel_means_model(), tmp_path, name="net")
    moved = tmp_path / "elsewhere.bin"
    bin_path.rename(moved)
    assert read_model(ov.Core(), xml_path, moved).outputs[0].get_any_name() == "means"


def test_unknown_model_suffix_is_a_model_error_naming_the_file(tmp_path):
    path = tmp_path / "weights.pt"
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(ModelError, match=r"weights\.pt.*unknown model format '\.pt'"):
        read_model(ov.Core(), path)


def test_missing_ir_weights_are_named(tmp_path):
    xml_path, bin_path = save_ir(channel_means_model(), tmp_path)
    bin_path.unlink()
    with pytest.raises(ModelError, match=r"model\.xml.*model\.bin is missing"):
        read_model(ov.Core(), xml_path)


@pytest.mark.parametrize("suffix", [".xml", ".onnx", ".tflite"])
def test_a_corrupt_model_file_is_a_model_error_naming_the_file(tmp_path, suffix):
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"this is not a model at all" * 10)
    if suffix == ".xml":
        path.with_suffix(".bin").write_bytes(b"\x00" * 8)
    with pytest.raises(ModelError, match=f"broken\\{suffix}") as info:
        read_model(ov.Core(), path)
    assert "src/" not in info.value.message  # no C++ source locations in what people read


def test_a_missing_model_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        read_model(ov.Core(), tmp_path / "absent.onnx")


def test_openvino_error_text_loses_its_cpp_locations():
    exc = RuntimeError(
        "Exception from src/inference/src/cpp/core.cpp:84:\n"
        "Check 'x' failed at src/frontends/common/src/frontend.cpp:53:\n"
        "Converting input model\nTypeError: boom\n\nAt:\n  /x.py(3): f\n"
    )
    assert describe_openvino_error(exc) == "Converting input model TypeError: boom"


# -- preprocessing: the dataclass -------------------------------------------------------------------
def test_preprocessing_round_trips_through_a_dict():
    prep = Preprocessing(width=320, height=240, layout="nchw", color="bgr", mean=[1, 2, 3], scale=2, resize="CUBIC")
    data = prep.to_dict()
    assert data == {
        "width": 320,
        "height": 240,
        "layout": "NCHW",
        "color": "BGR",
        "mean": [1.0, 2.0, 3.0],
        "scale": [2.0],
        "resize": "cubic",
    }
    assert Preprocessing.from_dict(data) == prep
    assert Preprocessing.from_dict({}) == Preprocessing() == Preprocessing.from_dict(None)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"width": 0}, "width must be between 1 and 16384"),
        ({"height": "tall"}, "height must be a positive integer"),
        ({"width": 2.5}, "width must be a positive integer"),
        ({"layout": "CHW"}, "layout must be one of NCHW, NHWC"),
        ({"color": "HSV"}, "color must be one of RGB, BGR"),
        ({"resize": "lanczos"}, "resize must be one of linear, nearest, cubic"),
        ({"mean": [1, 2]}, "mean must have 1 or 3 values"),
        ({"scale": [0]}, "scale values must not be 0"),
        ({"scale": ["x"]}, "scale must be a number or a list"),
        ({"normalize": True}, "unknown preprocessing field"),
    ],
)
def test_bad_preprocessing_is_refused_with_a_clear_message(data, message):
    with pytest.raises(InvalidInput, match=message):
        Preprocessing.from_dict(data)


def test_preprocessing_resolved_against_a_model_fills_size_and_layout():
    prep = Preprocessing().resolved(channel_means_model((1, 64, 48, 3), layout="NHWC"))
    assert (prep.width, prep.height, prep.layout) == (48, 64, "NHWC")


# -- preprocessing: in the graph --------------------------------------------------------------------
def test_preprocessing_feeds_any_frame_size_to_a_fixed_size_model():
    model = identity_model([1, 3, 8, 8])
    engine = InferenceEngine(apply_preprocessing(model, Preprocessing()), "CPU")
    assert engine.compiled.inputs[0].get_element_type() == ov.Type.u8
    for height, width in [(8, 8), (17, 31), (480, 640), (1, 1)]:
        out = engine.infer(solid(height, width, (10, 20, 30)))["pixels"]
        assert out.shape == (1, 3, 8, 8)
        np.testing.assert_allclose(out[0, :, 0, 0], [10, 20, 30], atol=1e-4)


def test_preprocessing_resizes_to_the_requested_size_of_a_dynamic_model():
    model = identity_model([1, 3, -1, -1])
    engine = InferenceEngine(apply_preprocessing(model, Preprocessing(width=12, height=5)), "CPU")
    assert engine.infer(solid(100, 50, (1, 2, 3)))["pixels"].shape == (1, 3, 5, 12)


def test_a_dynamic_model_without_a_preprocessing_size_is_refused():
    with pytest.raises(ModelError, match="dynamic size.*set preprocessing width and height"):
        apply_preprocessing(identity_model([1, 3, -1, -1]), Preprocessing())


def test_preprocessing_converts_colour_and_normalises_in_the_model_order():
    model = channel_means_model()
    prep = Preprocessing(color="BGR", mean=[1, 2, 3], scale=[2])
    out = InferenceEngine(apply_preprocessing(model, prep), "CPU").infer(solid(17, 31, (10, 20, 30)))["means"]
    # BGR: the model's channel 0 is blue (30); mean and scale apply in that order.
    np.testing.assert_allclose(out[0], [(30 - 1) / 2, (20 - 2) / 2, (10 - 3) / 2], atol=1e-4)


def test_preprocessing_infers_nhwc_layout_from_the_channels_axis():
    model = identity_model([1, 6, 4, 3])
    out = InferenceEngine(apply_preprocessing(model, Preprocessing()), "CPU").infer(solid(60, 40, (7, 8, 9)))
    assert out["pixels"].shape == (1, 6, 4, 3)
    np.testing.assert_allclose(out["pixels"][0, 3, 2], [7, 8, 9], atol=1e-4)


def test_preprocessing_feeds_a_grey_model_with_one_channel():
    out = InferenceEngine(apply_preprocessing(identity_model([1, 1, 4, 4]), Preprocessing()), "CPU").infer(
        solid(9, 9, (100, 100, 100))
    )
    np.testing.assert_allclose(out["pixels"], np.full((1, 1, 4, 4), 100.0), atol=0.5)


def previous_step_order(model: ov.Model, prep: Preprocessing, grey: bool = False) -> ov.Model:
    """``prep`` with the step order apply_preprocessing used before resizing moved first: convert the
    whole frame to f32, colour, resize, mean, scale. The reference the u8 resize is held to."""
    from openvino.preprocess import ColorFormat, PrePostProcessor, ResizeAlgorithm

    model = model.clone()
    ppp = PrePostProcessor(model)
    tensor = ppp.input().tensor()
    tensor.set_element_type(ov.Type.u8)
    tensor.set_layout(ov.Layout("NHWC"))
    tensor.set_color_format(ColorFormat.RGB)
    tensor.set_spatial_dynamic_shape()
    steps = ppp.input().preprocess()
    steps.convert_element_type(ov.Type.f32)
    if grey:
        steps.convert_color(ColorFormat.GRAY)
    elif prep.color == "BGR":
        steps.convert_color(ColorFormat.BGR)
    steps.resize({"linear": ResizeAlgorithm.RESIZE_LINEAR, "nearest": ResizeAlgorithm.RESIZE_NEAREST,
                  "cubic": ResizeAlgorithm.RESIZE_CUBIC}[prep.resize])
    if prep.mean is not None:
        steps.mean(prep.mean if len(prep.mean) > 1 else prep.mean[0])
    if prep.scale is not None:
        steps.scale(prep.scale if len(prep.scale) > 1 else prep.scale[0])
    ppp.input().model().set_layout(ov.Layout(prep.layout))
    return ppp.build()


def textured_frame(height=480, width=640) -> np.ndarray:
    """Smooth gradients plus seeded noise: every pixel differs, so resizing really interpolates."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    noise = np.random.default_rng(7).normal(0, 25, (height, width, 3))
    image = np.stack([0.3 * x + 20, 0.4 * y + 30, 250 - 0.2 * x - 0.1 * y], axis=-1) + noise
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def test_preprocessing_resizes_the_u8_frame_before_any_per_pixel_work():
    # The f32 conversion, colour, mean and scale must see the network's 64x64, not the frame's size:
    # on a 1920x1080 frame for a 736x736 network the other order cost a third of the inference.
    prep = Preprocessing(color="BGR", mean=[127.5], scale=[127.5])
    ops_in_order = list(apply_preprocessing(echo_model([1, 64, 64, 3]), prep).get_ordered_ops())
    kinds = [op.get_type_name() for op in ops_in_order]
    resize = ops_in_order[kinds.index("Interpolate")]
    assert resize.input(0).get_element_type() == ov.Type.u8
    convert = ops_in_order[kinds.index("Convert")]
    assert convert.input(0).get_element_type() == ov.Type.u8
    assert convert.input(0).get_partial_shape() == ov.PartialShape([1, 64, 64, 3])
    assert kinds.index("Interpolate") < kinds.index("Convert") < kinds.index("Gather")  # Gather: RGB->BGR


def test_cubic_resizing_stays_in_f32_where_its_overshoot_is_not_clamped():
    prep = Preprocessing(resize="cubic")
    ops_in_order = list(apply_preprocessing(echo_model([1, 64, 64, 3]), prep).get_ordered_ops())
    resize = next(op for op in ops_in_order if op.get_type_name() == "Interpolate")
    assert resize.input(0).get_element_type() == ov.Type.f32


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("resize", ["linear", "nearest", "cubic"])
def test_resizing_first_matches_the_previous_step_order_up_to_rounding(layout, resize):
    shape = [1, 64, 64, 3] if layout == "NHWC" else [1, 3, 64, 64]
    model = echo_model(shape)
    prep = Preprocessing(layout=layout, color="BGR", mean=[127.5], scale=[127.5], resize=resize)
    frame = textured_frame()
    new = InferenceEngine(apply_preprocessing(model, prep), "CPU").infer(frame)["pixels"]
    old = InferenceEngine(previous_step_order(model, prep), "CPU").infer(frame)["pixels"]
    assert new.shape == old.shape == tuple(shape)
    diff = (new.astype(np.float64) - old) * 127.5  # back in 0..255 pixel units
    if resize == "linear":
        # u8 interpolation rounds to whole values: at most half a level off, and unbiased.
        assert np.abs(diff).max() <= 0.5 + 1e-3
        assert abs(diff.mean()) < 0.02
        assert np.abs(diff).max() > 0  # it really is the u8 path, not the old one
    else:  # nearest picks pixels either way; cubic still resizes in f32
        assert np.abs(diff).max() <= 1e-3


def test_resized_gradient_matches_a_numpy_reference_with_colour_and_normalisation():
    # On an affine gradient any linear interpolation centred on the pixel gives the gradient's value
    # there, so numpy can say what the model must receive without copying OpenVINO's kernel.
    height, width, size = 480, 640, 64
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    ramps = [lambda x, y: 10 + 0.3 * x + 0.05 * y, lambda x, y: 100 + 0 * x, lambda x, y: 240 - 0.25 * x - 0.1 * y]
    frame = np.stack([np.round(f(x, y)) for f in ramps], axis=-1).astype(np.uint8)
    prep = Preprocessing(color="BGR", mean=[127.5], scale=[127.5])
    out = InferenceEngine(apply_preprocessing(echo_model([1, size, size, 3]), prep), "CPU").infer(frame)["pixels"]
    # half-pixel centres: output pixel j samples the frame at (j + 0.5) * in / out - 0.5
    sy = (np.arange(size) + 0.5) * height / size - 0.5
    sx = (np.arange(size) + 0.5) * width / size - 0.5
    gy, gx = np.meshgrid(sy, sx, indexing="ij")
    rgb = np.stack([f(gx, gy) for f in ramps], axis=-1)
    expected = (rgb[..., ::-1] - 127.5) / 127.5  # BGR, then (pixel - mean) / scale
    diff = (out[0].astype(np.float64) - expected) * 127.5
    # the frame's own rounding and the u8 resize's rounding: up to half a level each
    assert np.abs(diff).max() <= 1.0 + 1e-3
    assert abs(diff.mean()) < 0.05


def test_a_grey_model_gets_the_resized_frame_within_rounding_of_the_previous_order():
    model = echo_model([1, 1, 64, 64])
    frame = textured_frame()
    prep = Preprocessing(layout="NCHW")
    new = InferenceEngine(apply_preprocessing(model, prep), "CPU").infer(frame)["pixels"]
    old = InferenceEngine(previous_step_order(model, prep, grey=True), "CPU").infer(frame)["pixels"]
    diff = new.astype(np.float64) - old
    assert np.abs(diff).max() <= 0.5 + 1e-3
    assert abs(diff.mean()) < 0.05


def test_preprocessing_leaves_the_original_model_untouched():
    model = identity_model([1, 3, 8, 8])
    apply_preprocessing(model, Preprocessing(mean=[1]))
    assert model.inputs[0].get_element_type() == ov.Type.f32
    assert list(model.inputs[0].get_shape()) == [1, 3, 8, 8]


def test_preprocessing_keeps_every_output_name():
    x = ops.parameter([1, 3, 4, 4], np.float32, name="image")
    first, second = ops.result(ops.relu(x)), ops.result(ops.sigmoid(x))
    first.output(0).get_tensor().set_names({"boxes"})
    second.output(0).get_tensor().set_names({"scores"})
    model = apply_preprocessing(ov.Model([first, second], [x]), Preprocessing())
    assert [o.get_any_name() for o in model.outputs] == ["boxes", "scores"]
    assert set(InferenceEngine(model, "CPU").infer(solid(5, 5, (0, 0, 0)))) == {"boxes", "scores"}


def test_a_model_with_two_inputs_is_refused():
    a = ops.parameter([1, 3, 4, 4], np.float32, name="a")
    b = ops.parameter([1, 3, 4, 4], np.float32, name="b")
    model = ov.Model([ops.result(ops.add(a, b))], [a, b])
    with pytest.raises(ModelError, match="exactly one input, an image; it has 2 \\(a, b\\)"):
        apply_preprocessing(model, Preprocessing())


def test_a_model_whose_input_is_not_an_image_is_refused():
    with pytest.raises(ModelError, match="4-D image tensor"):
        apply_preprocessing(identity_model([1, 10]), Preprocessing())
    with pytest.raises(ModelError, match="cannot tell the layout"):
        apply_preprocessing(identity_model([1, 5, 8, 8]), Preprocessing())


# -- devices ------------------------------------------------------------------------------------------
def test_this_host_has_a_cpu_device():
    assert "CPU" in available_devices(ov.Core())
    require_device(ov.Core(), "CPU")
    require_device(ov.Core(), "cpu")
    require_device(ov.Core(), "AUTO")


def test_missing_device_error_names_available_devices():
    with pytest.raises(DeviceUnavailable) as info:
        require_device(FakeCore(["CPU"]), "GPU")
    assert info.value.message.startswith("OpenVINO device 'GPU' is not available on this host; available: CPU")
    assert info.value.details["available"] == ["CPU"]


def test_a_device_family_matches_its_numbered_devices():
    core = FakeCore(["CPU", "GPU.0", "GPU.1"])
    require_device(core, "GPU")
    require_device(core, "GPU.1")
    require_device(core, "AUTO:GPU,CPU")
    with pytest.raises(DeviceUnavailable, match="'GPU.2'.*available: CPU, GPU.0, GPU.1"):
        require_device(core, "GPU.2")
    with pytest.raises(DeviceUnavailable, match="'NPU'"):
        require_device(core, "AUTO:NPU,CPU")
    assert device_matches("gpu", ["GPU.0"]) and not device_matches("GP", ["GPU.0"])


def test_the_engine_refuses_a_device_the_host_lacks():
    if any(d.startswith("NPU") for d in ov.Core().available_devices):
        pytest.skip("this host has an NPU")
    with pytest.raises(DeviceUnavailable, match="'NPU'.*available: .*CPU"):
        InferenceEngine(channel_means_model(), "NPU")


# -- the engine ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def means_engine(tmp_path_factory):
    model = apply_preprocessing(channel_means_model(), Preprocessing())
    return InferenceEngine(model, "CPU", cache_dir=tmp_path_factory.mktemp("ov-cache"))


def test_engine_infer_returns_writable_copies_by_output_name(means_engine):
    first = means_engine.infer(solid(10, 10, (1, 2, 3)))
    second = means_engine.infer(solid(10, 10, (4, 5, 6)))
    assert list(first) == ["means"]
    np.testing.assert_allclose(first["means"][0], [1, 2, 3], atol=1e-4)  # not overwritten by the 2nd run
    np.testing.assert_allclose(second["means"][0], [4, 5, 6], atol=1e-4)
    first["means"][0, 0] = 99  # a copy, ours to change


def test_engine_infer_many_keeps_order(means_engine):
    rng = np.random.default_rng(1)
    images = [solid(int(rng.integers(1, 300)), int(rng.integers(1, 300)), (i, 2 * i, 255 - i)) for i in range(40)]
    results = list(means_engine.infer_many(iter(images)))
    assert len(results) == 40
    for i, result in enumerate(results):
        np.testing.assert_allclose(result["means"][0], [i, 2 * i, 255 - i], atol=1e-3)


def test_engine_infer_many_of_nothing_yields_nothing(means_engine):
    assert list(means_engine.infer_many([])) == []


def test_engine_infer_many_can_be_abandoned_half_way(means_engine):
    results = means_engine.infer_many(solid(20, 20, (i, i, i)) for i in range(100))
    np.testing.assert_allclose(next(results)["means"][0], [0, 0, 0], atol=1e-4)
    results.close()  # waits for requests still in flight; nothing fires afterwards
    np.testing.assert_allclose(means_engine.infer(solid(4, 4, (9, 9, 9)))["means"][0], [9, 9, 9], atol=1e-4)


def test_engine_infer_many_sizes_its_queue_from_the_device(means_engine):
    assert means_engine.optimal_requests == int(means_engine.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))


def test_engine_is_safe_to_call_from_several_threads(means_engine):
    failures: list[str] = []

    def worker(value: int) -> None:
        for _ in range(20):
            out = means_engine.infer(solid(16, 24, (value, value, value)))["means"][0]
            if not np.allclose(out, value, atol=1e-3):
                failures.append(f"{value}: {out}")

    threads = [threading.Thread(target=worker, args=(v,)) for v in (10, 100, 200, 250)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((4, 4), np.uint8), "H x W x 3"),
        (np.zeros((4, 4, 4), np.uint8), "H x W x 3"),
        (np.zeros((4, 4, 3), np.float32), "must be uint8"),
        ([[1, 2, 3]], "numpy array"),
    ],
)
def test_engine_refuses_frames_that_are_not_rgb_uint8(means_engine, image, message):
    with pytest.raises(InvalidInput, match=message):
        means_engine.infer(image)
    with pytest.raises(InvalidInput, match=message):
        list(means_engine.infer_many([solid(2, 2, (0, 0, 0)), image]))


def test_engine_accepts_a_non_contiguous_frame(means_engine):
    image = solid(20, 40, (5, 6, 7))[:, ::2]
    np.testing.assert_allclose(means_engine.infer(image)["means"][0], [5, 6, 7], atol=1e-4)


def test_engine_compiles_with_the_model_cache(tmp_path):
    cache = tmp_path / "ov-cache"
    model = apply_preprocessing(channel_means_model(), Preprocessing())
    InferenceEngine(model, "CPU", cache_dir=cache)
    assert any(cache.iterdir())  # compiled blobs were written


# -- the engine cache ---------------------------------------------------------------------------------
def test_engine_cache_evicts_the_least_recently_used():
    cache = EngineCache(capacity=2)
    built: list[str] = []

    def factory(name):
        def build():
            built.append(name)
            return f"engine-{name}"

        return build

    assert cache.get(("a", 1, "CPU"), factory("a")) == "engine-a"
    cache.get(("b", 1, "CPU"), factory("b"))
    cache.get(("a", 1, "CPU"), factory("a"))  # a is now the most recent
    cache.get(("c", 1, "CPU"), factory("c"))  # evicts b
    assert built == ["a", "b", "c"]
    assert set(cache.keys()) == {("a", 1, "CPU"), ("c", 1, "CPU")}
    cache.get(("a", 2, "CPU"), factory("a2"))  # a new version is another engine
    assert cache.peek(("a", 1, "CPU")) is None and len(cache) == 2


def test_engine_cache_builds_an_engine_once_under_concurrent_requests():
    cache = EngineCache(capacity=2)
    calls: list[int] = []

    def build():
        calls.append(1)
        time.sleep(0.2)
        return object()

    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(("m", 1, "CPU"), build))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(g) for g in got}) == 1


def test_engine_cache_forgets_a_failed_build():
    cache = EngineCache()

    def fail():
        raise ModelError("no")

    with pytest.raises(ModelError):
        cache.get(("m", 1, "CPU"), fail)
    assert cache.get(("m", 1, "CPU"), lambda: "ok") == "ok"


def test_model_modules_keep_no_state_at_import(tmp_path):
    import cluster.models.engine as engine_module

    assert not [n for n, v in vars(engine_module).items() if isinstance(v, (EngineCache, ov.Core, ov.CompiledModel))]


def test_engine_runs_the_cpu_in_full_precision_by_default():
    model = apply_preprocessing(channel_means_model(), Preprocessing())
    exact = InferenceEngine(model, "CPU")
    assert exact.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    chosen = InferenceEngine(model, "CPU", precision=None)  # whatever the CPU prefers (bf16 where it has it)
    np.testing.assert_allclose(chosen.infer(solid(8, 8, (4, 8, 16)))["means"][0], [4, 8, 16], rtol=1e-2)


# -- resizing on the host -------------------------------------------------------------------------------
def _jpeg(image: np.ndarray, quality: int = 92) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _smooth(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) * 255 // (width + height)],
                    axis=-1).astype(np.uint8)


def test_frames_for_a_model_of_known_size_are_decoded_straight_to_that_size():
    from cluster.workers.decode import FrameDecoder

    decode = FrameDecoder.for_preprocessing(Preprocessing(width=96, height=64))
    assert decode.resizes
    for size in ((640, 480), (50, 30), (96, 64)):
        image = decode(_jpeg(_smooth(size[1], size[0])), "f.jpg")
        assert image.shape == (64, 96, 3) and image.dtype == np.uint8


def test_cubic_resizing_and_models_of_unknown_size_keep_resizing_in_the_graph():
    from cluster.models.preprocessing import resizes_on_host
    from cluster.workers.decode import FrameDecoder

    assert not resizes_on_host(Preprocessing(width=96, height=64, resize="cubic"))
    assert not resizes_on_host(Preprocessing())
    assert resizes_on_host(Preprocessing(width=96, height=64, resize="nearest"))
    decode = FrameDecoder.for_preprocessing(Preprocessing(width=96, height=64, resize="cubic"))
    assert not decode.resizes
    # the DCT draft still shrinks the JPEG (to 1/4 here, never below the network size); the graph does the rest
    assert decode(_jpeg(_smooth(480, 640)), "f.jpg").shape[:2] == (120, 160)


@pytest.mark.parametrize("frame_size", [(640, 480), (300, 200)])
def test_resizing_on_the_host_gives_the_model_what_the_graph_resize_gave_it(frame_size):
    """Enlarging: bilinear in OpenCV and in OpenVINO agree to within a pixel level."""
    from cluster.workers.decode import FrameDecoder

    prep = Preprocessing(width=736, height=736, mean=[127.5], scale=[127.5], color="BGR")
    frame = _smooth(frame_size[1], frame_size[0])
    in_graph = InferenceEngine(apply_preprocessing(echo_model([1, 3, 736, 736]), prep), "CPU").infer(frame)["pixels"]
    decode = FrameDecoder.for_preprocessing(prep)
    on_host = InferenceEngine(apply_preprocessing(echo_model([1, 3, 736, 736]), prep, resize=False), "CPU").infer(
        decode(_png(frame), "f.png"))["pixels"]
    diff = (on_host - in_graph) * 127.5  # back to pixel levels
    assert on_host.shape == in_graph.shape == (1, 3, 736, 736)
    assert np.abs(diff).max() <= 1.0 + 1e-3
    # OpenCV's u8 bilinear uses 11-bit fixed-point weights: a bias of under a tenth of a level
    assert abs(float(diff.mean())) < 0.15


def test_a_graph_built_without_its_resize_refuses_frames_of_another_size():
    prep = Preprocessing(width=32, height=24)
    engine = InferenceEngine(apply_preprocessing(echo_model([1, 3, 24, 32]), prep, resize=False), "CPU")
    assert engine.infer(solid(24, 32, (1, 2, 3)))["pixels"].shape == (1, 3, 24, 32)
    with pytest.raises((ModelError, InvalidInput)):
        engine.infer(solid(48, 64, (1, 2, 3)))


def _png(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def test_shrinking_on_the_host_matches_the_graph_resize_too():
    """1920x1080 -> 736x736: both are plain bilinear with half-pixel centres, no antialiasing."""
    from cluster.workers.decode import FrameDecoder

    prep = Preprocessing(width=736, height=736)
    frame = _smooth(1080, 1920)
    in_graph = InferenceEngine(apply_preprocessing(echo_model([1, 3, 736, 736]), prep), "CPU").infer(frame)["pixels"]
    on_host = InferenceEngine(apply_preprocessing(echo_model([1, 3, 736, 736]), prep, resize=False), "CPU").infer(
        FrameDecoder.for_preprocessing(prep)(_png(frame), "f.png"))["pixels"]
    diff = on_host - in_graph
    assert np.abs(diff).max() <= 1.0 + 1e-3
    assert abs(float(diff.mean())) < 0.15


@pytest.mark.parametrize("prep", [
    Preprocessing(width=48, height=32, layout="NCHW", color="BGR", mean=[127.5], scale=[127.5]),
    Preprocessing(width=48, height=32, layout="NCHW", mean=[123.7, 116.3, 103.5], scale=[58.4, 57.1, 57.4]),
    Preprocessing(width=48, height=32, layout="NCHW", scale=[255.0]),
    Preprocessing(width=48, height=32, layout="NHWC", color="BGR", mean=[10.0]),
])
def test_the_explicit_no_resize_preprocessing_gives_the_model_what_prepostprocessor_gave_it(prep):
    shape = [1, 32, 48, 3] if prep.layout == "NHWC" else [1, 3, 32, 48]
    frame = _smooth(32, 48)
    ours = InferenceEngine(apply_preprocessing(echo_model(shape), prep, resize=False), "CPU").infer(frame)["pixels"]
    reference = InferenceEngine(previous_step_order(echo_model(shape), prep), "CPU").infer(frame)["pixels"]
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-5)


def test_the_explicit_preprocessing_puts_the_layout_change_last():
    prep = Preprocessing(width=48, height=32, color="BGR", mean=[127.5], scale=[127.5])
    ops_in_order = [op.get_type_name() for op in apply_preprocessing(echo_model([1, 3, 32, 48]), prep,
                                                                       resize=False).get_ordered_ops()]
    assert ops_in_order.index("Transpose") > ops_in_order.index("Divide") > ops_in_order.index("Convert")
