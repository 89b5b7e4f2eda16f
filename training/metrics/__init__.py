"""Evaluation metrics, one module per metric, each a plain function that computes the same way on every call:
ssim, perceptual (LPIPS-style), csim, fid, akd (AKD and normalised landmark error), motion (mouth and eye opening
correlation), sharpness (Laplacian variance of the face against the real one) and mouth_ssim (SSIM of the mouth on
open-mouth frames), the last two on boxes that `regions` places from landmarks. `registry` names them for `heads
evaluate` (training/evaluate.py), which runs them on the paper's protocol. Nothing is imported here, so that the
registry's names load without torch."""
