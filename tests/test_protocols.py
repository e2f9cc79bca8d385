"""KServe's v1 and v2 request shapes (``models.protocols``) without a server: parsing, limits, answers."""
from __future__ import annotations

import base64

import pytest

from models import protocols
from models.imaging import ImageError
from models.protocols import MAX_IMAGES, ProtocolRequest, Upload

PNG = b"\x89PNG\r\n\x1a\n fake"
B64 = base64.b64encode(PNG).decode()

pytestmark = pytest.mark.unit


def v2_input(name: str = "image", data: object = None, **fields: object) -> dict:
    """One v2 BYTES input tensor holding ``data`` (default: the fake PNG in base64)."""
    return {"name": name, "datatype": "BYTES", "shape": [1], "data": [B64] if data is None else data, **fields}


def refused(status: int, words: str, call, *args) -> None:
    """``call(*args)`` raises an ImageError with ``status`` whose message mentions ``words``."""
    with pytest.raises(ImageError) as raised:
        call(*args)
    assert raised.value.status == status and words in raised.value.message, raised.value.message


def test_v1_instances_take_data_or_b64() -> None:
    parsed = protocols.parse_body({"instances": [{"data": B64}, {"b64": B64}]})
    assert parsed == ProtocolRequest("v1", (Upload("instances[0].data", PNG), Upload("instances[1].b64", PNG)))


def test_v2_bytes_tensors_one_image_each_keep_name_and_id() -> None:
    parsed = protocols.parse_body({"id": "req-7", "inputs": [v2_input("a"), v2_input("b", shape=[1, 1])]})
    assert parsed.protocol == "v2" and parsed.request_id == "req-7"
    assert [(upload.name, upload.data) for upload in parsed.uploads] == [("a", PNG), ("b", PNG)]


def test_base64_may_wrap_lines_or_carry_a_data_url_prefix() -> None:
    wrapped = "\n".join(B64[i:i + 4] for i in range(0, len(B64), 4))
    assert protocols.decode_base64(wrapped, "x") == PNG
    assert protocols.decode_base64(f"data:image/png;base64,{B64}", "x") == PNG


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"image": B64}, 415, "KServe v1"),
    ([1, 2], 415, "not an image"),
    ({"instances": []}, 400, "non-empty list"),
    ({"instances": {"data": B64}}, 400, "non-empty list"),
    ({"instances": [B64]}, 400, "instances[0] must be an object"),
    ({"instances": [{"data": B64}, {"image": B64}]}, 400, "instances[1]"),
    ({"instances": [{"data": "not base64!"}]}, 400, "instances[0].data is not valid base64"),
    ({"instances": [{"data": ""}]}, 400, "instances[0].data is empty"),
    ({"instances": [{"data": 12}]}, 400, "must be a base64 string"),
    ({"instances": [{"data": B64}] * (MAX_IMAGES + 1)}, 413, f"at most {MAX_IMAGES}"),
    ({"inputs": [v2_input(datatype="FP32")]}, 415, "BYTES tensor"),
    ({"inputs": [v2_input(shape=[2], data=[B64, B64])]}, 400, "one image per tensor"),
    ({"inputs": [v2_input(data=B64)]}, 400, '"data": ["<base64 image file>"]'),
    ({"inputs": [v2_input(name="")]}, 400, 'needs a "name"'),
    ({"inputs": ["image"]}, 400, "tensor object"),
    ({"id": 3, "inputs": [v2_input()]}, 400, '"id" must be a string'),
])
def test_mistakes_are_4xx_naming_the_image(body: object, status: int, words: str) -> None:
    refused(status, words, protocols.parse_body, body)


def test_enveloped_rows_are_v1_instances_or_v2_inputs_with_their_first_element() -> None:
    assert protocols.parse_enveloped([{"data": B64}]).uploads == (Upload("instances[0].data", PNG),)
    v2 = protocols.parse_enveloped([v2_input("x", data=B64)])
    assert v2.protocol == "v2" and v2.uploads == (Upload("inputs[0] ('x')", PNG, "x"),)
    for rows in (None, []):
        refused(400, "no images", protocols.parse_enveloped, rows)


def test_images_of_one_request_share_the_pixel_limit() -> None:
    limits = []

    def denoise(data: bytes, limit: int) -> int:
        limits.append(limit)
        if 600 > limit:
            raise ImageError(413, "image is 600 px; the limit is small")
        return 600

    uploads = [Upload(f"instances[{i}].data", b"x") for i in range(3)]
    assert protocols.denoise_all(uploads[:2], denoise, lambda pixels: pixels, 1500) == [600, 600]
    assert limits == [1500, 900]
    with pytest.raises(ImageError) as raised:
        protocols.denoise_all(uploads, denoise, lambda pixels: pixels, 1500)
    assert raised.value.status == 413
    assert raised.value.message.startswith("instances[2].data: image is 600 px")
    assert "counts every image of one request together" in raised.value.message


def test_a_failing_image_is_named_in_the_error() -> None:
    def denoise(data: bytes, limit: int) -> int:
        raise ImageError(415, "the body is not an image Pillow recognises")

    refused(415, "inputs[0] ('a'): the body is not an image", protocols.denoise_all,
            [Upload("inputs[0] ('a')", b"x", "a")], denoise, len, 100)


def test_answers_carry_base64_pngs_in_each_protocols_shape() -> None:
    v1 = protocols.parse_body({"instances": [{"data": B64}]})
    assert protocols.response(v1, [b"png-out"], "m", "1.0", "rid") == {"predictions": [{"b64": base64.b64encode(b"png-out").decode()}]}
    v2 = protocols.parse_body({"inputs": [v2_input("photo")]})
    answer = protocols.response(v2, [b"png-out"], "m", "1.0", "rid")
    assert answer == {"id": "rid", "model_name": "m", "model_version": "1.0", "outputs": [
        {"name": "photo", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(b"png-out").decode()]}]}
    assert protocols.enveloped_outputs(v1, [b"p"]) == [{"b64": "cA=="}]
    assert protocols.enveloped_outputs(v2, [b"p"]) == ["cA=="]


def test_only_json_objects_and_arrays_look_like_json() -> None:
    assert protocols.looks_like_json(b'  {"instances"') and protocols.looks_like_json(b"[1]")
    assert not protocols.looks_like_json(PNG) and not protocols.looks_like_json(b"\xff\xd8\xff")


def test_the_module_does_not_import_torchserve() -> None:
    with open(protocols.__file__) as module:
        source = module.read()
    assert "import ts" not in source and "from ts" not in source


def test_the_largest_base64_answer_fits_torchserves_response_limit() -> None:
    """The images of one v1/v2 request share the pixel limit, so the worst answer is the worst PNG in base64."""
    from models.imaging import MAX_PIXELS
    from scripts.paths import CONFIG
    from scripts.serving.front import read_properties

    worst_png = int(4 * MAX_PIXELS * 1.01) + 1024 * 1024
    worst_answer = 4 * -(-worst_png // 3) + 1024
    assert int(read_properties(CONFIG)["max_response_size"]) >= worst_answer
