"""Numpy postprocessing shared by the server and the device.

Everything under ``tfsp.postprocess`` is device-safe: it imports numpy (and
optionally OpenCV) only, never TensorFlow or Keras, so the code that turns raw
named model outputs into ``tfsp.structures`` runs unchanged next to a TFLite
interpreter.

Pixel convention (stated once for the package): coordinates are continuous;
pixel (row i, column j) covers ``[j, j + 1) x [i, i + 1)`` and its centre is
``(j + 0.5, i + 0.5)``. Boxes are ``[x0, y0, x1, y1]`` (``xyxy``) or
``[cx, cy, w, h]`` (``cxcywh``) in the units stated by each function.

Modules:
    boxes: IoU, box format conversion, clipping, SSD centre-size box coding,
        greedy and class-aware NMS (index-identical to
        ``tf.image.non_max_suppression``).
    anchors: SSD default boxes (Liu et al. 2016) and the SSD300 / SSD512
        paper configurations.
    ssd: SSD decoding (deltas + logits -> Detections).
    paf: OpenPose Part Affinity Field parsing (heatmaps + PAFs -> Poses);
        paf_assembly holds its matching and assembly steps, paf_benchmark
        its speed benchmark (``python -m tfsp.postprocess.paf_benchmark``).
    dense: dense maps (segmentation logits, depth) back onto the original pixels.
    attributes: scale-preserving object crops and attribute decoding.
    roi_align: RoIAlign (aligned, sampling ratio 2) and FPN level assignment
        (the TF twin for training is ``tfsp.data.roi_align_tf``).
    rcnn: FPN anchors, RPN proposals, box-head decoding (Mask R-CNN's numpy
        steps between its graphs); rcnn_masks: mask paste-back and keypoint
        heatmap decoding into InstanceMasks and Poses.
"""
