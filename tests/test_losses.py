"""Loss functions on hand-computed inputs, and which parameters each loss may move."""

import torch

from training.config import LossConfig, ModelConfig, TrainConfig
from training.data import SyntheticEpisodes
from training.losses import ContentLoss, feature_matching, hinge_d, match
from training.phases import discriminator_loss
from training.train import MetaLearner


def test_hinge_by_hand():
    real = torch.tensor([2.0, 0.5, -1.0])  # relu(1 - r): 0, 0.5, 2 -> mean 5/6
    fake = torch.tensor([-2.0, 0.0])  # relu(1 + f): 0, 1 -> mean 1/2
    assert torch.isclose(hinge_d(real, fake), torch.tensor(5 / 6 + 1 / 2))


def test_feature_matching_by_hand():
    fake = [torch.zeros(1, 2), torch.ones(1, 4)]
    real = [torch.ones(1, 2) * 3, torch.ones(1, 4)]  # L1 means: 3 and 0 -> mean over blocks 1.5
    assert torch.isclose(feature_matching(fake, real), torch.tensor(1.5))
    real_param = real[0].requires_grad_()
    feature_matching([fake[0].requires_grad_()], [real_param]).backward()
    assert real_param.grad is None  # the real side is a constant


def test_match_by_hand():
    assert torch.isclose(match(torch.tensor([[1.0, -1.0]]), torch.tensor([[0.0, 1.0]])), torch.tensor(1.5))


def tiny_learner(**loss) -> tuple[MetaLearner, dict]:
    torch.manual_seed(0)
    cfg = TrainConfig(model=ModelConfig.tiny(), loss=LossConfig(**loss), k=2, batch=2)
    learner = MetaLearner(cfg, num_videos=3, device=torch.device("cpu"))
    ds = SyntheticEpisodes(3, 64, 2)
    batch = {k: torch.stack([ds[n][k] for n in range(2)]) for k in ("frames", "landmarks", "video")}
    return learner, batch


def grads(module) -> set[str]:
    return {n for n, p in module.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_match_loss_reaches_W_and_E_only():
    learner, batch = tiny_learner(perceptual=(), l1=1.0)
    E, G, D = learner.nets.E, learner.nets.G, learner.nets.D
    frames, lms, video = batch["frames"], batch["landmarks"], batch["video"]
    e = E(frames[:, 1], lms[:, 1])
    match(D.W[video], e).backward()
    assert grads(E) and not grads(G)
    assert grads(D) == {"W"}
    assert D.W.grad[2].abs().sum() == 0  # only the rows of the batch's videos

    E.zero_grad(), D.zero_grad()
    match(D.W[video], E(frames[:, 1], lms[:, 1]), to_embedder=False).backward()
    assert not grads(E) and grads(D) == {"W"}  # --loss.no-match-to-embedder: only W_i follows ê


def test_discriminator_loss_leaves_E_and_G_alone():
    learner, batch = tiny_learner(perceptual=(), l1=1.0)
    E, G, D = learner.nets.E, learner.nets.G, learner.nets.D
    x, y, video = batch["frames"][:, 0], batch["landmarks"][:, 0], batch["video"]
    fake = G(y, E(batch["frames"][:, 1], batch["landmarks"][:, 1]))
    discriminator_loss(D, x, y, fake, D.video_vector(video)).backward()
    assert not grads(E) and not grads(G) and grads(D)


def test_step_routes_updates_and_keeps_perceptual_frozen():
    learner, batch = tiny_learner(perceptual=("vgg19", "dlib"), random_perceptual=True)
    frozen = {n: p.clone() for n, p in learner.content.named_parameters()}
    assert frozen and not any(p.requires_grad for p in learner.content.parameters())
    before = {name: [p.clone() for p in m.parameters()] for name, m in learner.nets.modules().items()}
    losses = learner.step(batch)
    assert {"cnt", "adv", "fm", "mch", "dsc", "l1"} <= set(losses)
    for name, module in learner.nets.modules().items():
        moved = any(not torch.equal(a, b) for a, b in zip(before[name], module.parameters(), strict=True))
        assert moved, f"{name} did not learn"
    for n, p in learner.content.named_parameters():
        assert torch.equal(frozen[n], p)


def test_content_loss_is_zero_for_identical_images_and_reaches_the_image():
    content = ContentLoss(LossConfig(perceptual=("vgg19", "vggface", "dlib"), random_perceptual=True))
    img = torch.rand(1, 3, 64, 64) * 2 - 1
    assert content(img, img).item() == 0
    fake = (img + 0.1 * torch.randn_like(img)).requires_grad_()
    loss = content(fake, img)
    loss.backward()
    assert loss > 0 and fake.grad.abs().sum() > 0


def test_content_loss_with_kept_real_features_is_the_same_loss():
    """Fine-tuning keeps the real photos' features (`ContentLoss.features`) instead of recomputing them each step:
    the loss and its gradient must not change, image by image of a batch."""
    content = ContentLoss(LossConfig(perceptual=("vgg19", "dlib"), l1=1.0, random_perceptual=True))
    real = torch.rand(3, 3, 64, 64) * 2 - 1
    fake = (real + 0.2 * torch.randn_like(real)).requires_grad_()
    kept = content.features(real)
    torch.testing.assert_close(content(fake, real, real_features=kept), content(fake, real))
    grads = [torch.autograd.grad(content(fake, real, **extra), fake)[0] for extra in ({}, {"real_features": kept})]
    torch.testing.assert_close(*grads)
    picked = {name: [level[[2, 0]] for level in levels] for name, levels in kept.items()}  # a step's draw
    torch.testing.assert_close(content(fake[[2, 0]], real[[2, 0]], real_features=picked),
                               content(fake[[2, 0]], real[[2, 0]]))
