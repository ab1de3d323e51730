"""A drawn face for the demo corpus: mouth, brows and eyes show an expression, the mouth
opens with the voice, the head moves, and the camera adds noise."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Expression:
    mouth_curve: float   # +1 smile, -1 frown
    brow_raise: float    # +1 raised, -1 lowered
    brow_tilt: float     # +1 inner ends down (anger), -1 inner ends up (sadness)
    eye_open: float      # 0 closed .. 1 wide open


def draw_face(expression: Expression, mouth_open: float, size: tuple[int, int],
              offset: tuple[float, float], skin: tuple[int, int, int], rng: np.random.Generator,
              noise: float) -> np.ndarray:
    """One RGB frame (H, W, 3) uint8."""
    width, height = size
    img = np.empty((height, width, 3), np.uint8)
    shade = np.linspace(70, 120, height, dtype=np.float32)[:, None]
    img[:] = np.stack([shade * 0.9, shade, shade * 1.1], axis=-1).clip(0, 255).astype(np.uint8)
    s = height / 128.0  # every length below is for a 128-pixel-high frame
    cx, cy = width / 2 + offset[0], height / 2 + offset[1]

    def pt(x, y):
        return int(round(cx + x * s)), int(round(cy + y * s))

    def ax(a, b):
        return max(1, int(round(a * s))), max(1, int(round(b * s)))

    cv2.ellipse(img, pt(0, -4), ax(38, 50), 0, 0, 360, (40, 30, 25), -1, cv2.LINE_AA)  # hair
    cv2.ellipse(img, pt(0, 4), ax(34, 46), 0, 0, 360, skin, -1, cv2.LINE_AA)
    dark = (35, 25, 20)
    eye_h = 2 + 6 * float(np.clip(expression.eye_open, 0, 1))
    for side in (-1, 1):
        ex = 14 * side
        cv2.ellipse(img, pt(ex, -8), ax(8, eye_h), 0, 0, 360, (235, 235, 235), -1, cv2.LINE_AA)
        cv2.circle(img, pt(ex, -8), max(1, int(round(min(4, eye_h) * s))), dark, -1, cv2.LINE_AA)
        inner_y = -20 - 5 * expression.brow_raise + 4 * expression.brow_tilt
        outer_y = -20 - 5 * expression.brow_raise - 2 * expression.brow_tilt
        cv2.line(img, pt(5 * side, inner_y), pt(23 * side, outer_y), dark, max(1, int(round(3 * s))), cv2.LINE_AA)
    cv2.line(img, pt(0, -6), pt(-3, 10), tuple(int(c * 0.75) for c in skin), max(1, int(round(2 * s))), cv2.LINE_AA)
    cv2.line(img, pt(-3, 10), pt(3, 10), tuple(int(c * 0.75) for c in skin), max(1, int(round(2 * s))), cv2.LINE_AA)
    # The mouth: a parabola whose corners rise with the curve; the lower lip drops as it opens.
    xs = np.linspace(-14, 14, 15)
    sag = expression.mouth_curve * 7 * (1 - (xs / 14) ** 2)  # image y grows downward: a smile sags
    upper = [pt(x, 24 + d) for x, d in zip(xs, sag)]
    lower = [pt(x, 24 + d + 9 * mouth_open * (1 - (x / 14) ** 2)) for x, d in zip(xs, sag)]
    polygon = np.array(upper + lower[::-1], np.int32)
    cv2.fillPoly(img, [polygon], (90, 20, 25), cv2.LINE_AA)
    cv2.polylines(img, [np.array(upper, np.int32)], False, (120, 40, 40), max(1, int(round(2 * s))), cv2.LINE_AA)
    if noise > 0:
        img = (img.astype(np.float32) + rng.normal(0, noise, img.shape)).clip(0, 255).astype(np.uint8)
    return img
