"""How good a frozen representation is: weighted k-NN and a linear probe on cached features.

    bank = dataset_features(model.encoder_q, train_set)          # (N, F), eval mode, no augmentation
    test = dataset_features(model.encoder_q, test_set)
    knn = knn_accuracy(bank, train_set.labels, test, test_set.labels, num_classes=10)
    probe = linear_probe(bank, train_set.labels, test, test_set.labels, num_classes=10, epochs=100, generator=g)

- `knn_accuracy`: the weighted k-NN classifier of Wu et al. 2018 (InstDisc), used to monitor MoCo
  on CIFAR (MoCo's CIFAR demo): cosine similarities to the L2-normalised bank, the k most similar
  vote for their label with weight exp(similarity / temperature), the heaviest class wins;
- `linear_probe`: a linear classifier (zero-initialised, so the only randomness is the batch
  order) trained by SGD with momentum and a cosine learning rate on standardised frozen features
  (mean and std of the training features), as in the linear evaluation protocol; its top-1
  accuracy on the test features. Features are computed once, so 100 epochs take seconds;
- `separator_auroc`: Theorem 2 at the level of supports: a logistic regression fitted on
  representations of data against those of their NDA, its AUROC on held-out ones.
Each returns a dict holding the value and its protocol.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn

from negaug.contrastive.analysis import representations
from negaug.registry import check_float, check_int

MAX_PROBE_EPOCHS = 10_000


@torch.no_grad()
def dataset_features(encoder: nn.Module, dataset, batch_size: int = 512, device=None) -> Tensor:
    """(N, F) float32 features of every image of `dataset` (a negaug ImageDataset, `get_batch`),
    in order, by `encoder` in eval mode (its mode is restored), on `device` (default: the
    encoder's)."""
    batch_size = check_int("batch_size", batch_size, 1)
    device = device or next(encoder.parameters()).device
    chunks = []
    for index in torch.arange(len(dataset)).split(batch_size):
        images, _ = dataset.get_batch(index)
        chunks.append(representations(encoder, images.to(device), batch_size).float())
    return torch.cat(chunks)


def _check_split(features: Tensor, labels: Tensor, name: str) -> None:
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"{name} features must be (N, F) with labels (N,), got {tuple(features.shape)} "
                         f"and {tuple(labels.shape)}")


@torch.no_grad()
def knn_predict(bank: Tensor, bank_labels: Tensor, queries: Tensor, num_classes: int, k: int = 200,
                temperature: float = 0.1, chunk_size: int = 1024) -> Tensor:
    """(Q,) int64 predicted labels of `queries` (Q, F) by weighted k-NN over `bank` (N, F) with
    labels (N,) in [0, num_classes); k is capped at N. Ties between classes go to the lower label."""
    k = min(check_int("k", k, 1), bank.shape[0])
    temperature = check_float("temperature", temperature, 0.0, open_low=True)
    bank = F.normalize(bank.float(), dim=1)
    predictions = []
    for chunk in queries.split(chunk_size):
        similarity = F.normalize(chunk.float(), dim=1) @ bank.T  # (q, N)
        top, index = similarity.topk(k, dim=1)  # (q, k)
        weights = (top / temperature).exp()
        neighbours = F.one_hot(bank_labels.to(chunk.device)[index], num_classes).float()  # (q, k, C)
        votes = torch.einsum("qk,qkc->qc", weights, neighbours)  # a sum, not scatter_add: deterministic on GPUs
        predictions.append(votes.argmax(1))
    return torch.cat(predictions) if predictions else torch.zeros(0, dtype=torch.long)


def knn_accuracy(bank: Tensor, bank_labels: Tensor, queries: Tensor, query_labels: Tensor, num_classes: int,
                 k: int = 200, temperature: float = 0.1) -> dict:
    """{"value": top-1 accuracy in [0, 1] of `knn_predict`, "protocol": {...}}."""
    _check_split(bank, bank_labels, "bank")
    _check_split(queries, query_labels, "query")
    predicted = knn_predict(bank, bank_labels, queries, num_classes, k, temperature)
    accuracy = (predicted.cpu() == query_labels.cpu()).float().mean().item() if len(query_labels) else math.nan
    protocol = {"classifier": "weighted k-NN (Wu et al. 2018), cosine similarity", "k": min(k, bank.shape[0]),
                "temperature": temperature, "num_bank": bank.shape[0], "num_queries": queries.shape[0],
                "feature_dim": bank.shape[1], "num_classes": num_classes}
    return {"value": accuracy, "protocol": protocol}


def linear_probe(train_features: Tensor, train_labels: Tensor, test_features: Tensor, test_labels: Tensor,
                 num_classes: int, epochs: int = 100, batch_size: int = 256, lr: float = 0.1, momentum: float = 0.9,
                 weight_decay: float = 0.0, generator: torch.Generator | None = None) -> dict:
    """Train a linear classifier on frozen, standardised features (module docstring) for `epochs`
    epochs of shuffled batches (order from `generator`); {"value": test top-1 accuracy,
    "train_accuracy", "protocol"}. Deterministic given the features and the generator state."""
    _check_split(train_features, train_labels, "train")
    _check_split(test_features, test_labels, "test")
    epochs = check_int("epochs", epochs, 1, MAX_PROBE_EPOCHS)
    batch_size = check_int("batch_size", batch_size, 1)
    lr = check_float("lr", lr, 0.0, open_low=True)
    mean, std = train_features.mean(0), train_features.std(0).clamp_min(1e-6)
    x_train, x_test = (train_features - mean) / std, (test_features - mean) / std
    y_train = train_labels.to(x_train.device)
    classifier = fit_linear(x_train, y_train, num_classes, epochs, batch_size, lr, momentum, weight_decay, generator)
    with torch.no_grad():
        test_accuracy = (classifier(x_test).argmax(1).cpu() == test_labels.cpu()).float().mean().item()
        train_accuracy = (classifier(x_train).argmax(1) == y_train).float().mean().item()
    protocol = {"classifier": "linear, zero-initialised, on standardised frozen features", "epochs": epochs,
                "batch_size": batch_size, "optimizer": (f"SGD lr {lr:g} (cosine to 0), momentum {momentum:g}, "
                                                        f"weight decay {weight_decay:g}"),
                "num_train": x_train.shape[0], "num_test": x_test.shape[0], "feature_dim": x_train.shape[1],
                "num_classes": num_classes, "augmentation": "none"}
    return {"value": test_accuracy, "train_accuracy": train_accuracy, "protocol": protocol}


def fit_linear(x: Tensor, y: Tensor, num_classes: int, epochs: int, batch_size: int, lr: float, momentum: float,
               weight_decay: float, generator: torch.Generator | None) -> nn.Linear:
    """A zero-initialised nn.Linear(F, num_classes) trained on x (N, F), y (N,) by cross-entropy,
    SGD with momentum, the learning rate decayed by a half cosine over all steps."""
    classifier = nn.Linear(x.shape[1], num_classes).to(x.device)
    nn.init.zeros_(classifier.weight)
    nn.init.zeros_(classifier.bias)
    optimizer = torch.optim.SGD(classifier.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    total, step = epochs * math.ceil(x.shape[0] / batch_size), 0
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(x.shape[0], generator=generator).to(x.device)
            for index in order.split(batch_size):
                for group in optimizer.param_groups:
                    group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
                loss = F.cross_entropy(classifier(x[index]), y[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
    return classifier


def separator_auroc(fit_data: Tensor, fit_nda: Tensor, eval_data: Tensor, eval_nda: Tensor, epochs: int = 100,
                    batch_size: int = 256, lr: float = 0.1, generator: torch.Generator | None = None) -> dict:
    """Theorem 2 at the level of supports: how well a linear classifier tells representations of
    NDA samples from representations of data, on samples it was not fitted on.

    Logistic regression (`fit_linear`: a zero-initialised linear layer, two-class cross-entropy,
    SGD with momentum 0.9 and a cosine learning rate, batch order from `generator`) is fitted on
    `fit_data` (N, F) (label 0) against `fit_nda` (M, F) (label 1), both standardised with the
    mean and std of the fitted features; its score is the logit difference. Returns {"value": the
    AUROC of the score on `eval_data` (P, F) against `eval_nda` (Q, F) (1 = every NDA sample
    scored above every data sample, 0.5 = chance; ties count a half), "fit_auroc", "protocol"}.
    Deterministic given the inputs and the generator state."""
    parts = {"fit_data": fit_data, "fit_nda": fit_nda, "eval_data": eval_data, "eval_nda": eval_nda}
    for name, part in parts.items():
        if part.ndim != 2 or part.shape[0] < 1 or part.shape[1] != fit_data.shape[-1]:
            raise ValueError(f"{name} must be (N >= 1, F) with the F of fit_data {tuple(fit_data.shape)}, "
                             f"got {tuple(part.shape)}")
    epochs, batch_size = check_int("epochs", epochs, 1), check_int("batch_size", batch_size, 1)
    x_fit = torch.cat([fit_data, fit_nda]).float()  # (N + M, F)
    mean, std = x_fit.mean(0), x_fit.std(0).clamp_min(1e-6)
    y_fit = torch.cat([torch.zeros(len(fit_data)), torch.ones(len(fit_nda))]).long().to(x_fit.device)
    classifier = fit_linear((x_fit - mean) / std, y_fit, 2, epochs, batch_size, lr, 0.9, 0.0, generator)

    def auroc(data: Tensor, nda: Tensor) -> float:
        with torch.no_grad():
            logits = classifier((torch.cat([data, nda]).float().to(x_fit.device) - mean) / std)
        labels = [0] * len(data) + [1] * len(nda)
        return float(roc_auc_score(labels, (logits[:, 1] - logits[:, 0]).double().cpu().numpy()))

    protocol = {"classifier": "logistic regression (linear, zero-initialised) on standardised representations",
                "epochs": epochs, "batch_size": batch_size, "optimizer": f"SGD lr {lr:g} (cosine to 0), momentum 0.9",
                "score": "logit(NDA) - logit(data)", "num_fit": [len(fit_data), len(fit_nda)],
                "num_eval": [len(eval_data), len(eval_nda)], "feature_dim": fit_data.shape[1]}
    return {"value": auroc(eval_data, eval_nda), "fit_auroc": auroc(fit_data, fit_nda), "protocol": protocol}
