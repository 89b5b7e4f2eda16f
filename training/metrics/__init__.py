"""Evaluation metrics, one module per metric, each a plain function that computes the same way on every call:
ssim, perceptual (LPIPS-style), csim, fid, akd (AKD and normalised landmark error) and motion (mouth and eye
opening correlation). `heads evaluate` (training/evaluate.py) runs them on the paper's protocol."""
