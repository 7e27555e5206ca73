"""Unlearning methods: registered loss functions, with their formulas.

A method is a function ``fn(step: Step, *, hyperparameters...) -> (loss, parts)``
registered next to its definition::

    @METHODS.register("NPO", reference=True)
    def npo(step: Step, *, beta: float = 0.1, ...) -> tuple[Tensor, dict]: ...

Its keyword-only arguments, with their types and defaults, *are* its hyperparameters: a spec
or ``--set`` names them, and a wrong name or type is an :class:`~kgtest.errors.InputError`.
Defaults are open-unlearning's. The shared loop (:mod:`kgtest.unlearn.loop`) builds a
:class:`Step` (the model, the frozen reference, a forget batch, a retain batch) and calls it.

Notation. For a document ``x`` with answer ``y`` (the supervised tokens: completion + eos; a
statement is supervised whole), ``log p(y|x)`` is the *sum* of the answer tokens'
log-probabilities and ``|y|`` their number. ``NLL_f``/``NLL_r`` are token-mean negative
log-likelihoods of forget/retain batches; ``R`` is the retain term, ``NLL_r`` or
``KL(p_ref || p_θ)`` averaged over retain answer positions (``retain_loss = "nll" | "kl"``);
``σ`` is the logistic function; ``mean`` is over the documents of the batch.

Examples
--------
>>> sorted(METHODS.names())
['GradAscent', 'GradDiff', 'IdkDPO', 'IdkSFT', 'NPO', 'RMU', 'SimNPO']
>>> METHODS.get("NPO").resolve({"beta": 0.2})
NPOParams(beta=0.2, gamma=1.0, alpha=1.0, retain_loss='nll')
>>> METHODS.get("NOP")
Traceback (most recent call last):
...
kgtest.errors.InputError: unknown unlearning method 'NOP' (did you mean 'NPO'? known: ...)
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel

from kgtest.config import build
from kgtest.errors import InputError
from kgtest.model import base_model, head_logits
from kgtest.registry import Registry, first_doc_line

__all__ = ["Batch", "Step", "Method", "METHODS", "token_logprobs", "sequence_logprob",
           "mean_nll", "retain_term", "npo_loss", "simnpo_loss", "dpo_loss", "blocks",
           "layer_output", "masked_mse"]

Loss = tuple[Tensor, dict[str, Tensor]]


# --- what a loss sees ------------------------------------------------------------------------

@dataclass(frozen=True)
class Batch:
    """Right-padded documents and which tokens are the answer.

    Attributes
    ----------
    ids : Tensor
        ``(B, L)`` int64: ``[bos] + prompt + completion + [eos]``, pad right.
    target : Tensor
        ``(B, L)`` bool: True at positions ``t`` whose token is supervised (the answer).
    """

    ids: Tensor
    target: Tensor

    @classmethod
    def from_rows(cls, tokens: Tensor, lengths: Tensor, loss_start: Tensor) -> Batch:
        """From :class:`~kgtest.train.EncodedCorpus` rows, cut to the longest row.

        >>> b = Batch.from_rows(torch.tensor([[1, 5, 6, 2, 0]]), torch.tensor([4]),
        ...                     torch.tensor([2]))
        >>> b.ids.tolist(), b.target.tolist()
        ([[1, 5, 6, 2]], [[False, False, True, True]])
        """
        L = int(lengths.max())
        t = torch.arange(L, device=tokens.device)  # (L,)
        target = (t >= loss_start[:, None]) & (t < lengths[:, None])  # (B, L)
        return cls(tokens[:, :L], target)

    @property
    def predict(self) -> Tensor:
        """``(B, L)`` bool: positions whose *next* token is an answer token."""
        out = torch.zeros_like(self.target)
        out[:, :-1] = self.target[:, 1:]
        return out

    @property
    def n_answer(self) -> Tensor:
        """``(B,)`` float: answer tokens per document, ``|y|``."""
        return self.target.sum(-1).float()


@dataclass
class Step:
    """The inputs of one unlearning step (built by the loop, read by a method)."""

    model: PreTrainedModel  # the model being unlearned (train mode)
    forget: Batch  # forget documents (pair methods: the true answers)
    retain: Batch | None = None  # retain documents (None when the method needs none)
    ref: PreTrainedModel | None = None  # the frozen original (methods with reference=True)
    idk: Batch | None = None  # pair methods: the same prompts answered 'unknown'
    state: dict = field(default_factory=dict)  # per-run state a method may keep (RMU)
    generator: torch.Generator | None = None  # per-run randomness (RMU's direction)


# --- the registry -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Method:
    """A registered method: its loss function and what the loop must give it."""

    name: str
    fn: Callable[..., Loss]
    reference: bool  # needs the frozen original model
    pairs: bool  # forget examples are (true answer, 'unknown' answer) pairs
    hyper: type  # frozen dataclass of the hyperparameters (fn's keyword-only arguments)
    trainable: Callable | None  # (model, hp) -> parameter names to update (None: all)
    summary: str

    def resolve(self, params: dict | None = None, *, where: str = ""):
        """Hyperparameters from a table, checked: unknown names and wrong types refused.

        >>> METHODS.get("SimNPO").resolve({"beta": "big"})
        Traceback (most recent call last):
        ...
        kgtest.errors.InputError: method SimNPO: key 'beta' must be float, got 'big'
        """
        if isinstance(params, self.hyper):
            return params
        at = f"{where}: method {self.name}" if where else f"method {self.name}"
        return build(self.hyper, dict(params or {}), where=at)

    def needs_reference(self, hp) -> bool:
        """True when the loop must keep a frozen copy of the original model."""
        return self.reference or getattr(hp, "retain_loss", None) == "kl"

    def needs_retain(self, hp) -> bool:
        return hasattr(hp, "alpha") and hp.alpha != 0


class MethodRegistry(Registry[Method]):
    """Method name -> :class:`Method`; an unknown name lists the known ones."""

    def register(self, name: str, *, reference: bool = False, pairs: bool = False,
                 trainable: Callable | None = None):
        """Decorator: register a loss function under ``name``."""

        def deco(fn):
            hints = typing.get_type_hints(fn)
            fields = [(p.name, hints[p.name], dataclasses.field(default=p.default))
                      for p in inspect.signature(fn).parameters.values()
                      if p.kind is inspect.Parameter.KEYWORD_ONLY]
            hyper = dataclasses.make_dataclass(f"{name}Params", fields, frozen=True)
            self.add(name, Method(name, fn, reference, pairs, hyper, trainable,
                                  first_doc_line(fn)))
            return fn

        return deco


METHODS = MethodRegistry("unlearning method")


# --- log-probabilities of answers ---------------------------------------------------------------

def _hidden(model: PreTrainedModel, ids: Tensor) -> Tensor:
    # inputs_embeds rather than input_ids: skips HF's pad-id check (a host sync), as in train
    embeds = model.get_input_embeddings()(ids)  # (B, L, D)
    return base_model(model)(inputs_embeds=embeds, use_cache=False).last_hidden_state


def _answer_logits(model: PreTrainedModel, batch: Batch) -> Tensor:
    """``(S, V)`` float logits at the positions that predict the answer tokens."""
    if hasattr(model, "answer_logits"):  # a member of a stacked model (unlearn/stacked.py)
        return model.answer_logits(batch)
    h = _hidden(model, batch.ids)  # (B, L, D)
    return head_logits(model, h[batch.predict]).float()  # (S, V)


def token_logprobs(model: PreTrainedModel, batch: Batch) -> Tensor:
    """``(B, L)`` log-probability of each answer token given what precedes it (0 elsewhere).

    >>> from kgtest.corpus.tokenizer import build_tokenizer
    >>> from kgtest.model import ModelConfig, build_model
    >>> tok = build_tokenizer(["a b c"])
    >>> m = build_model(ModelConfig(preset="tiny"), tok)
    >>> b = Batch(torch.tensor([[1, 4, 5, 2]]), torch.tensor([[False, False, True, True]]))
    >>> lp = token_logprobs(m, b)
    >>> lp.shape, bool(lp[0, :2].eq(0).all() and lp[0, 2:].lt(0).all())
    (torch.Size([1, 4]), True)
    """
    logits = _answer_logits(model, batch)  # (S, V)
    lp = logits.log_softmax(-1).gather(1, batch.ids[batch.target][:, None])[:, 0]  # (S,)
    out = torch.zeros(batch.ids.shape, dtype=lp.dtype, device=lp.device)  # (B, L)
    return out.masked_scatter(batch.target, lp)


def sequence_logprob(model: PreTrainedModel, batch: Batch) -> Tensor:
    """``(B,)`` ``log p(y|x)``: the answer tokens' log-probabilities, summed per document."""
    return token_logprobs(model, batch).sum(-1)


def mean_nll(model: PreTrainedModel, batch: Batch) -> Tensor:
    """Token-mean negative log-likelihood of the answers (the training loss)."""
    logits = _answer_logits(model, batch)  # (S, V)
    return F.cross_entropy(logits, batch.ids[batch.target])


def retain_term(step: Step, kind: str) -> Tensor:
    """``R``: ``NLL_r``, or ``KL(p_ref || p_θ)`` of next-token distributions averaged over
    the retain answer positions (``kind = "kl"``, needs ``step.ref``)."""
    if step.retain is None:
        raise ValueError("this method needs retain documents")
    if kind == "nll":
        return mean_nll(step.model, step.retain)
    with torch.no_grad():
        ref = _answer_logits(step.ref, step.retain).log_softmax(-1)  # (S, V)
    cur = _answer_logits(step.model, step.retain).log_softmax(-1)  # (S, V)
    return F.kl_div(cur, ref, reduction="batchmean", log_target=True)


def _with_retain(forget: Tensor, step: Step, gamma: float, alpha: float, kind: str) -> Loss:
    parts = {"forget": forget.detach()}
    loss = gamma * forget
    if alpha:
        r = retain_term(step, kind)
        parts["retain"] = r.detach()
        loss = loss + alpha * r
    return loss, parts


# --- the formulas, on log-probabilities (tested against hand-computed values) ------------------

def npo_loss(logp: Tensor, logp_ref: Tensor, beta: float) -> Tensor:
    """NPO: ``-(2/β) mean log σ(-β (log p_θ(y|x) - log p_ref(y|x)))``.

    >>> round(float(npo_loss(torch.tensor([-2.0]), torch.tensor([-1.0]), 0.1)), 4)
    12.8879
    """
    return -(2.0 / beta) * F.logsigmoid(-beta * (logp - logp_ref)).mean()


def simnpo_loss(logp: Tensor, n_tokens: Tensor, beta: float, delta: float) -> Tensor:
    """SimNPO: ``-(2/β) mean log σ(-β log p_θ(y|x) / |y| - β δ)`` (no reference).

    >>> round(float(simnpo_loss(torch.tensor([-3.0]), torch.tensor([2.0]), 4.5, 0.0)), 4)
    0.0005
    """
    return -(2.0 / beta) * F.logsigmoid(beta * (-logp / n_tokens - delta)).mean()


def dpo_loss(win: Tensor, win_ref: Tensor, lose: Tensor, lose_ref: Tensor,
             beta: float) -> Tensor:
    """DPO as open-unlearning writes it:
    ``-(2/β) mean log σ(β [(log p_θ(w) - log p_ref(w)) - (log p_θ(l) - log p_ref(l))])``.

    (Rafailov et al.'s DPO is ``β/2`` times this; NPO is this with no preferred answer.)

    >>> t = torch.tensor
    >>> round(float(dpo_loss(t([-1.0]), t([-2.0]), t([-3.0]), t([-1.0]), 0.1)), 4)
    11.0871
    """
    margin = (win - win_ref) - (lose - lose_ref)
    return -(2.0 / beta) * F.logsigmoid(beta * margin).mean()


# --- the methods ---------------------------------------------------------------------------------

RetainKind = typing.Literal["nll", "kl"]


@METHODS.register("GradAscent")
def grad_ascent(step: Step) -> Loss:
    """Gradient ascent: ``L = -NLL_f`` (maximise the forget documents' NLL)."""
    nll = mean_nll(step.model, step.forget)
    return -nll, {"forget": (-nll).detach()}


@METHODS.register("GradDiff")
def grad_diff(step: Step, *, gamma: float = 1.0, alpha: float = 1.0,
              retain_loss: RetainKind = "nll") -> Loss:
    """Gradient difference: ``L = γ (-NLL_f) + α R``."""
    return _with_retain(-mean_nll(step.model, step.forget), step, gamma, alpha, retain_loss)


@METHODS.register("NPO", reference=True)
def npo(step: Step, *, beta: float = 0.1, gamma: float = 1.0, alpha: float = 1.0,
        retain_loss: RetainKind = "nll") -> Loss:
    """Negative preference optimisation (Zhang et al. 2024), with a retain term:
    ``L = γ · (-(2/β) mean log σ(-β (log p_θ(y|x) - log p_ref(y|x)))) + α R``.

    ``log p`` are summed answer-token log-probabilities, never raw logits.
    """
    logp = sequence_logprob(step.model, step.forget)  # (B,)
    with torch.no_grad():
        logp_ref = sequence_logprob(step.ref, step.forget)  # (B,)
    return _with_retain(npo_loss(logp, logp_ref, beta), step, gamma, alpha, retain_loss)


@METHODS.register("SimNPO")
def simnpo(step: Step, *, beta: float = 4.5, delta: float = 0.0, gamma: float = 0.125,
           alpha: float = 1.0, retain_loss: RetainKind = "nll") -> Loss:
    """SimNPO (Fan et al. 2024), reference-free and length-normalised:
    ``L = γ · (-(2/β) mean log σ(-β log p_θ(y|x) / |y| - β δ)) + α R``."""
    logp = sequence_logprob(step.model, step.forget)  # (B,)
    forget = simnpo_loss(logp, step.forget.n_answer, beta, delta)
    return _with_retain(forget, step, gamma, alpha, retain_loss)


@METHODS.register("IdkSFT", pairs=True)
def idk_sft(step: Step, *, gamma: float = 1.0, alpha: float = 1.0,
            retain_loss: RetainKind = "nll") -> Loss:
    """Fine-tune forget questions to answer 'unknown' (the positive framing):
    ``L = γ NLL(unknown | x_f) + α R``."""
    return _with_retain(mean_nll(step.model, step.idk), step, gamma, alpha, retain_loss)


@METHODS.register("IdkDPO", reference=True, pairs=True)
def idk_dpo(step: Step, *, beta: float = 0.1, gamma: float = 1.0, alpha: float = 1.0,
            retain_loss: RetainKind = "nll") -> Loss:
    """DPO preferring 'unknown' (``w``) over the true answer (``l``) on forget questions:
    ``L = γ · (-(2/β) mean log σ(β [(log p_θ(w) - log p_ref(w)) - (log p_θ(l) - log p_ref(l))]))
    + α R``."""
    win = sequence_logprob(step.model, step.idk)  # (B,)
    lose = sequence_logprob(step.model, step.forget)  # (B,)
    with torch.no_grad():
        win_ref = sequence_logprob(step.ref, step.idk)
        lose_ref = sequence_logprob(step.ref, step.forget)
    forget = dpo_loss(win, win_ref, lose, lose_ref, beta)
    return _with_retain(forget, step, gamma, alpha, retain_loss)


# --- RMU: activations at one block ---------------------------------------------------------

def blocks(model: PreTrainedModel) -> nn.ModuleList:
    """The transformer blocks (GPT-2 ``transformer.h``, Llama ``model.layers``)."""
    body = base_model(model)
    return body.h if hasattr(body, "h") else body.layers


def _layer(model: PreTrainedModel, layer: int) -> int:
    n = len(blocks(model))
    if layer == -1:
        return n // 2
    if not 0 <= layer < n:
        raise InputError(f"method RMU: key 'layer' must be -1 (middle) or in [0, {n}), "
                         f"got {layer}")
    return layer


def layer_output(model: PreTrainedModel, ids: Tensor, layer: int) -> Tensor:
    """``(B, L, D)`` output of block ``layer`` (the residual stream after it)."""
    cache: list[Tensor] = []

    def hook(_module, _inputs, out):
        cache.append(out[0] if isinstance(out, tuple) else out)

    handle = blocks(model)[layer].register_forward_hook(hook)
    try:
        _hidden(model, ids)
    finally:
        handle.remove()
    return cache[0]


def masked_mse(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    """open-unlearning's activation loss: per document, the squared error averaged over the
    width and then over the masked positions; then the mean over documents.

    >>> a, b = torch.zeros(1, 2, 2), torch.tensor([[[1.0, 1.0], [3.0, 3.0]]])
    >>> float(masked_mse(a, b, torch.tensor([[True, False]])))
    1.0
    """
    sq = (a - b.expand_as(a)).pow(2).mean(-1)  # (B, L)
    m = mask.float()
    return ((sq * m).sum(-1) / m.sum(-1).clamp(min=1)).mean()


def _rmu_trainable(model: PreTrainedModel, hp) -> list[str]:
    layer = _layer(model, hp.layer)
    names = [n for n, _ in model.named_parameters()]
    if hp.params == "all":
        return names
    if hp.params == "mlp_out":  # open-unlearning/WMDP: MLP output weights of layers l-2..l
        idx = "|".join(str(i) for i in range(max(0, layer - 2), layer + 1))
        pattern = rf".*\.(h|layers)\.({idx})\.mlp\.(c_proj|down_proj)\.weight"
    else:
        pattern = hp.params
    try:
        chosen = [n for n in names if re.fullmatch(pattern, n)]
    except re.error as err:
        raise InputError(f"method RMU: key 'params' is not a valid regex ({err})") from None
    if not chosen:
        raise InputError(f"method RMU: key 'params' = {hp.params!r} matches no parameter "
                         f"(e.g. {names[1]!r}); use 'mlp_out', 'all' or a regex")
    return chosen


@METHODS.register("RMU", reference=True, trainable=_rmu_trainable)
def rmu(step: Step, *, steering_coeff: float = 20.0, alpha: float = 1.0, gamma: float = 1.0,
        layer: int = -1, params: str = "mlp_out") -> Loss:
    """Representation misdirection (Li et al. 2024, WMDP):
    ``L = γ MSE(h_θ^ℓ(x_f), c·u) + α MSE(h_θ^ℓ(x_r), h_ref^ℓ(x_r))``.

    ``h^ℓ`` is the output of block ``layer`` (-1: the middle block) at the positions that
    predict answer tokens; ``u = v / ||v||`` with ``v ~ U[0, 1)^D`` drawn once per run;
    ``c = steering_coeff``. Only ``params`` update: ``"mlp_out"`` (MLP output weights of
    blocks ``ℓ-2..ℓ``, open-unlearning's choice), ``"all"``, or a regex over parameter names.
    """
    layer = _layer(step.model, layer)
    h = layer_output(step.model, step.forget.ids, layer)  # (B, L, D)
    if "control" not in step.state:
        v = torch.rand(h.shape[-1], generator=step.generator)  # (D,) on the CPU: seeded
        step.state["control"] = (v / v.norm() * steering_coeff).to(h.device)
    forget = masked_mse(h.float(), step.state["control"], step.forget.predict)
    parts = {"forget": forget.detach()}
    loss = gamma * forget
    if alpha:
        h_r = layer_output(step.model, step.retain.ids, layer)  # (B, L, D)
        with torch.no_grad():
            h_ref = layer_output(step.ref, step.retain.ids, layer)
        retain = masked_mse(h_r.float(), h_ref.float(), step.retain.predict)
        parts["retain"] = retain.detach()
        loss = loss + alpha * retain
    return loss, parts
