"""Scene sampling and rendering: occlusion, keypoint visibility, depth order, person anatomy."""

import numpy as np

from tfsp.data import synthetic_person, synthetic_scene
from tfsp.data.keypoints import KEYPOINT_NAMES
from tfsp.data.synthetic_scene import Layer

INDEX = {name: k for k, name in enumerate(KEYPOINT_NAMES)}


def _layer(mask: np.ndarray, category_id: int = 2) -> Layer:
    return Layer(category_id, mask, "red", np.array([200.0, 0.0, 0.0], np.float32), True, False)


def test_resolve_occlusion_golden():
    back, middle, front = (np.zeros((12, 12), bool) for _ in range(3))
    back[0:10, 0:10] = True  # 100 px
    middle[2:8, 2:8] = True  # 36 px, all but 4 of them under the front layer
    front[2:8, 2:8] = True
    front[2:4, 2:4] = False  # 32 px
    assert 4 < synthetic_scene.MIN_VISIBLE_AREA_PX <= 32  # the golden below relies on it
    layers, visible = synthetic_scene.resolve_occlusion([_layer(back), _layer(middle, 3), _layer(front, 4)])
    assert [layer.category_id for layer in layers] == [2, 4]  # middle dropped: 4 px < minimum
    np.testing.assert_array_equal(visible[1], front)
    np.testing.assert_array_equal(visible[0], back & ~front)  # the dropped layer occludes nothing


def test_keypoint_visibility_golden():
    visible = np.zeros((8, 8), bool)
    visible[2:5, 2:5] = True
    points = np.zeros((17, 2))
    points[0] = (2.0, 2.0)  # pixel (2, 2): visible
    points[1] = (4.99, 4.99)  # pixel (4, 4): visible
    points[2] = (5.0, 4.0)  # pixel (4, 5): in the image, not visible -> occluded
    points[3] = (8.0, 1.0)  # x == width: outside
    points[4] = (-0.01, 3.0)  # outside
    points[5:] = (6.5, 6.5)
    out = synthetic_scene.keypoint_visibility(points, visible)
    assert out.dtype == np.float32 and out.shape == (17, 3)
    np.testing.assert_array_equal(out[:5], np.float32([[2, 2, 2], [4.99, 4.99, 2], [5, 4, 1], [0, 0, 0], [0, 0, 0]]))
    assert (out[5:, 2] == 1).all()


def test_person_keypoints_lie_on_the_drawn_silhouette():
    for seed in range(30):
        rng = np.random.default_rng(seed)
        mask, keypoints, _ = synthetic_person.draw_person(rng, 64, rng.uniform(0, 64, size=2))
        np.testing.assert_array_equal(keypoints, np.round(keypoints, synthetic_person.KEYPOINT_DECIMALS))
        inside = np.all((keypoints >= 0) & (keypoints < 64), axis=1)
        cols, rows = np.floor(keypoints[inside]).astype(int).T
        assert mask[rows, cols].all()


def test_person_detail_shows_face_marks_and_a_sideways_persons_far_limbs_inside_the_silhouette():
    sideways = frontal = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        mask, keypoints, detail = synthetic_person.draw_person(rng, 128, np.array([64.0, 64.0]))
        point = {name: keypoints[k] for k, name in enumerate(KEYPOINT_NAMES)}
        shoulders = np.linalg.norm(point["left_shoulder"] - point["right_shoulder"])
        torso = np.linalg.norm((point["left_shoulder"] + point["right_shoulder"] - point["left_hip"]
                                - point["right_hip"]) / 2)
        # shoulders 2 x SHOULDER_HALF_WIDTH apart frontally, SIDEWAYS_WIDTH times that sideways
        is_sideways = shoulders < 0.5 * 2 * synthetic_person.SHOULDER_HALF_WIDTH / synthetic_person.TORSO * torso
        assert detail.dtype == np.uint8 and detail.shape == mask.shape
        assert not detail[~mask].any()
        assert set(np.unique(detail)) <= {synthetic_person.DETAIL_BODY, synthetic_person.DETAIL_FAR_LIMB,
                                          synthetic_person.DETAIL_FACE_MARK}
        nose = np.floor(keypoints[INDEX["nose"]]).astype(int)
        assert detail[nose[1], nose[0]] == synthetic_person.DETAIL_FACE_MARK
        far = detail == synthetic_person.DETAIL_FAR_LIMB
        if not is_sideways:
            frontal += 1
            assert not far.any()
        else:
            sideways += 1
            assert far.any()
            # one wrist and one ankle (the far ones) may lie on far-limb pixels, never both
            for joint in ("wrist", "ankle"):
                cols, rows = np.floor([point[f"left_{joint}"], point[f"right_{joint}"]]).astype(int).T
                assert not far[rows, cols].all()
    assert sideways and frontal


def test_layer_colours_blend_far_limbs_to_grey_and_face_marks_to_the_opposite_colour():
    detail = np.array([[synthetic_person.DETAIL_BODY, synthetic_person.DETAIL_FAR_LIMB,
                        synthetic_person.DETAIL_FACE_MARK]], np.uint8)
    rgb = np.array([200.0, 0.0, 100.0], np.float32)
    layer = Layer(synthetic_scene.PERSON, np.ones((1, 3), bool), "red", rgb, True, False, detail=detail)
    colors = synthetic_scene.layer_colors(layer, np.zeros(3, int), np.arange(3))
    grey, blend = synthetic_scene.FAR_LIMB_GREY, synthetic_scene.FAR_LIMB_BLEND
    np.testing.assert_allclose(colors[0], rgb)
    np.testing.assert_allclose(colors[1], rgb + blend * (grey - rgb), rtol=1e-6)
    np.testing.assert_allclose(colors[2], rgb + synthetic_scene.FACE_MARK_BLEND * ((255.0 - rgb) - rgb), rtol=1e-6)
    np.testing.assert_array_equal(layer.color_rgb, rgb)  # not modified


def test_body_proportions():
    height = 100.0
    bones = {("left_shoulder", "left_elbow"): synthetic_person.UPPER_ARM,
             ("right_elbow", "right_wrist"): synthetic_person.FOREARM,
             ("left_hip", "left_knee"): synthetic_person.THIGH, ("right_knee", "right_ankle"): synthetic_person.SHIN}
    for seed in range(20):
        points = synthetic_person.body_keypoints(np.random.default_rng(seed), height)
        assert points.shape == (18, 2)  # 17 keypoints + head centre
        for (a, b), fraction in bones.items():
            np.testing.assert_allclose(np.linalg.norm(points[INDEX[a]] - points[INDEX[b]]), fraction * height)
        head = points[-1]
        for name in KEYPOINT_NAMES[:5]:  # face keypoints lie on the head disc
            assert np.linalg.norm(points[INDEX[name]] - head) < synthetic_person.HEAD_RADIUS * height
        hips = (points[INDEX["left_hip"]] + points[INDEX["right_hip"]]) / 2
        np.testing.assert_allclose(hips, 0.0, atol=1e-9)  # the body frame is centred on the hips


def test_nearer_layers_have_smaller_depth_everywhere():
    checked = 0
    for seed in range(20):
        rendered = synthetic_scene.render_scene(np.random.default_rng(seed), 96)
        depths = [rendered.depth_mm[mask] for mask in rendered.visible_masks]
        assert all(d.max() < synthetic_scene.DEPTH_BACKGROUND_MM for d in depths)
        for back in range(len(depths)):
            for front in range(back + 1, len(depths)):
                assert depths[front].max() < depths[back].min()
                checked += 1
    assert checked > 20


def test_image_shows_each_layer_in_its_colour():
    rendered = synthetic_scene.render_scene(np.random.default_rng(5), 128)
    assert rendered.image_rgb.dtype == np.uint8 and rendered.image_rgb.shape == (128, 128, 3)
    assert len(rendered.layers) >= 2
    for layer, visible in zip(rendered.layers, rendered.visible_masks):
        difference = np.abs(rendered.image_rgb[visible].astype(np.float32) - layer.color_rgb)
        assert np.median(difference) < synthetic_scene.SHADE_AMPLITUDE / 2 + 3 * synthetic_scene.IMAGE_NOISE_STD


def test_negative_fraction():
    empty = sum(not synthetic_scene.sample_layers(np.random.default_rng(seed), 32) for seed in range(1000))
    expected = 1000 * synthetic_scene.NEGATIVE_FRACTION  # 50, binomial std about 7
    assert abs(empty - expected) < 4 * np.sqrt(expected)
