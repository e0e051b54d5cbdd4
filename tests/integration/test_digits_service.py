from __future__ import annotations

import httpx
from sklearn.datasets import load_digits

DIGITS = load_digits()


def test_classify_reads_real_digits(digits_url: str) -> None:
    images = DIGITS.images[-20:]
    response = httpx.post(f"{digits_url}/classify", json={"images": images.tolist()}, timeout=10)
    assert response.status_code == 200
    body = response.json()
    labels = [r["label"] for r in body["results"]]
    correct = sum(int(a == b) for a, b in zip(labels, DIGITS.target[-20:], strict=True))
    assert correct >= 17
    assert all(abs(sum(r["probabilities"]) - 1) < 1e-3 for r in body["results"])
    assert (body["served_by"], body["degraded"]) == ("digits-mlp", False)


def test_a_flat_image_is_a_shape_error_not_reshaped(digits_url: str) -> None:
    flat = DIGITS.images[0].reshape(64).tolist()
    response = httpx.post(f"{digits_url}/classify", json={"images": [flat]}, timeout=10)
    assert response.status_code == 422
    [field] = response.json()["error"]["fields"]
    assert (field["path"], field["rule"]) == ("images", "shape")


def test_pixels_out_of_range_are_each_reported(digits_url: str) -> None:
    image = DIGITS.images[0].tolist()
    image[0][0], image[7][7] = 17, -1
    response = httpx.post(f"{digits_url}/classify", json={"images": [image]}, timeout=10)
    assert response.status_code == 422
    assert {f["path"] for f in response.json()["error"]["fields"]} == {"images[0][0][0]", "images[0][7][7]"}


def test_too_many_images_are_refused(digits_url: str) -> None:
    images = [DIGITS.images[0].tolist()] * 65
    response = httpx.post(f"{digits_url}/classify", json={"images": images}, timeout=10)
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["rule"] == "max_rows"
