"""Evaluation metrics, one module per metric, each a plain function that computes the same way on every call:
ssim, perceptual (LPIPS-style), csim, fid, akd (AKD and normalised landmark error) and motion (mouth and eye
opening correlation). `registry` names them for `heads evaluate` (training/evaluate.py), which runs them on the
paper's protocol. Nothing is imported here, so that the registry's names load without torch."""
