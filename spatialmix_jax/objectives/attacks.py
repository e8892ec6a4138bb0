"""L∞ attacks (paper §4.3 and stronger ones) and the robustness evaluation.

Attacks (`eval.attacks`):
  fgsm:  the paper's eq. 4, one signed-gradient step of ε.
  pgd:   PGD-k as `eval.pgd_variant` says (below); the paper's PGD-2 in its grids.
  pgd20: Madry et al.'s PGD with 20 steps of 2.5ε/20 from a uniform random start, whatever the
         eval.pgd_* fields say: its own name, so records tell it apart from the paper's PGD-2.
  apgd:  APGD-CE (`apgd.py`), `eval.apgd_steps` iterations (100, the authors' default).
White-box unless `eval.transfer_from` names another workdir: then the images are crafted on
that (source) model and the evaluated model only classifies them (`crafted_accuracy`).

Images are NHWC in [0, 1]; ε is in the same pixel units (configs give it in units of 1/255).
Every adversarial image stays in the ε-ball around the clean image and in [0, 1]. Attacks run
the model with BatchNorm in eval mode (running statistics), as the test metrics do, except
FGSM adversarial *training*, which attacks the train-mode network it is about to update.

PGD variants (`eval.pgd_variant`):
  paper: the paper's eq. 4 iterated k times (`eval.pgd_steps`), each step of size ε followed by
         the projection onto the ε-ball and [0, 1], from the clean image: the paper states no
         random start and no smaller step.
  madry: Madry et al.'s PGD: a uniform random start in the ε-ball, steps of 2.5ε/k.
`eval.pgd_step_size` > 0 (in 1/255) replaces the variant's step size.
"""

import functools
import os

import jax
import jax.numpy as jnp

from spatialmix_jax.infra import errors
from spatialmix_jax.infra import plotting
from spatialmix_jax.objectives import apgd as apgd_lib
from spatialmix_jax.objectives import eval_loop
from spatialmix_jax.objectives import tasks

ATTACKS = tasks.ATTACKS
PGD_VARIANTS = ('paper', 'madry')
PGD20_STEPS = 20


def parse_attacks(spec):
  """'fgsm,pgd' → ('fgsm', 'pgd'); '' → ()."""
  names = tuple(n.strip() for n in spec.split(',') if n.strip())
  unknown = [n for n in names if n not in ATTACKS]
  if unknown:
    raise errors.ConfigError(f'Unknown attack(s) {unknown} in eval.attacks; choose from {ATTACKS}.')
  return names


def parse_epsilons(spec):
  """'0,0.5,8' (units of 1/255) → ((0., 0.), (0.5, 0.00196…), (8., 0.0314…)): (label, ε)."""
  try:
    labels = tuple(float(e) for e in str(spec).split(',') if e.strip())
  except ValueError:
    raise errors.ConfigError(f'eval.epsilons must be comma-separated numbers (units of '
                             f'1/255), got {spec!r}.') from None
  if not labels:
    raise errors.ConfigError('eval.epsilons is empty; give e.g. 0,0.5,1,2,4,8 (units of 1/255).')
  for label in labels:
    check_epsilon(label, 'eval.epsilons')
  return tuple((label, label / 255.0) for label in labels)


def check_epsilon(label, field):
  if not 0.0 <= label / 255.0 <= 1.0:
    raise errors.ConfigError(f'{field} {label} (units of 1/255) is outside [0, 1] in pixel '
                             'units; use a value in [0, 255].')


def validate_config(config, task_class):
  """One-line errors for attack and adversarial-training settings, before any compute."""
  attacks = parse_attacks(config.eval.attacks)
  if attacks or config.adversarial_training.enabled:
    if not task_class.attacks:
      raise errors.ConfigError(f'Task {config.task!r} allows no attacks and no adversarial '
                               'training; clear eval.attacks / adversarial_training.enabled.')
  if config.eval.pgd_variant not in PGD_VARIANTS:
    raise errors.ConfigError(f'Unknown eval.pgd_variant {config.eval.pgd_variant!r}; choose one '
                             f'of {PGD_VARIANTS}.')
  if attacks:
    parse_epsilons(config.eval.epsilons)
  source = config.eval.transfer_from
  if source:
    if not attacks:
      raise errors.ConfigError('eval.transfer_from is set but eval.attacks is empty; name the '
                               'attacks to craft on the source model, e.g. '
                               '--config.eval.attacks=pgd20,apgd.')
    if '://' not in source and not os.path.isfile(os.path.join(source, 'config.json')):
      raise errors.ConfigError(f'eval.transfer_from {source!r} has no config.json; give the '
                               'workdir of a trained run (the source model the attacks are '
                               'crafted on).')
  if config.adversarial_training.enabled:
    check_epsilon(config.adversarial_training.epsilon, 'adversarial_training.epsilon')


def fgsm(loss_fn, images, epsilon):
  """x + ε·sign(∇x loss), clipped to [0, 1]. `loss_fn(images)` is a scalar (a sum over
  examples, so each example's gradient is its own)."""
  grad = jax.grad(loss_fn)(images)
  return jnp.clip(images + epsilon * jnp.sign(grad), 0.0, 1.0)


def pgd(loss_fn, images, epsilon, *, steps, step_size, key=None):
  """`steps` signed-gradient steps of `step_size`, each projected onto the ε-ball ∩ [0, 1];
  starts at a uniform random point of the ball when `key` is given."""
  def project(x):
    return jnp.clip(jnp.clip(x, images - epsilon, images + epsilon), 0.0, 1.0)

  x = images
  if key is not None:
    x = project(images + jax.random.uniform(key, images.shape, images.dtype, -1.0, 1.0) * epsilon)

  def step(x, _):
    grad = jax.grad(loss_fn)(x)
    return project(x + step_size * jnp.sign(grad)), None

  x, _ = jax.lax.scan(step, x, None, length=steps)
  return x


def pgd_step_size(eval_config, epsilon):
  if eval_config.pgd_step_size > 0:
    return eval_config.pgd_step_size / 255.0
  if eval_config.pgd_variant == 'madry':
    return 2.5 * epsilon / eval_config.pgd_steps
  return epsilon


def settings(attack, eval_config):
  """What the records say about how `attack` ran (its step, steps and start)."""
  if attack == 'fgsm':
    return {'steps': 1, 'step_size': 'ε', 'random_start': False}
  if attack == 'pgd20':
    return {'steps': PGD20_STEPS, 'step_size': f'2.5ε/{PGD20_STEPS}', 'random_start': True}
  if attack == 'apgd':
    return {'steps': eval_config.apgd_steps, 'loss': 'cross-entropy', 'restarts': 1,
            'initial_step_size': f'{apgd_lib.INITIAL_STEP:g}ε', 'momentum': apgd_lib.MOMENTUM,
            'rho': apgd_lib.RHO, 'random_start': True}
  step = ('ε' if eval_config.pgd_variant == 'paper' else f'2.5ε/{eval_config.pgd_steps}')
  if eval_config.pgd_step_size > 0:
    step = f'{eval_config.pgd_step_size:g}/255'
  return {'steps': eval_config.pgd_steps, 'step_size': step,
          'random_start': eval_config.pgd_variant == 'madry', 'variant': eval_config.pgd_variant}


def classification_loss(experiment, variables, targets, train=False):
  """images → summed cross-entropy of the model (BatchNorm statistics never updated here)."""
  def loss_fn(images):
    if train:
      outputs, _ = experiment.model.apply(variables, images, train=True, mutable=['batch_stats'])
    else:
      outputs = experiment.model.apply(variables, images, train=False)
    loss, _ = experiment.task.per_example(outputs, targets, training=False)
    return jnp.sum(loss)
  return loss_fn


def per_example_loss(experiment, variables, targets):
  """images → (per-example cross-entropy, per-example correct) of the model in eval mode."""
  def loss_fn(images):
    outputs = experiment.model.apply(variables, images, train=False)
    loss, metrics = experiment.task.per_example(outputs, targets, training=False)
    return loss, metrics['accuracy'] > 0
  return loss_fn


def adversarial_images(experiment, variables, images, targets, attack, epsilon, key):
  """The attacked batch for `attack` (one of ATTACKS) at ε (pixel units) in eval mode."""
  eval_config = experiment.config.eval
  if attack == 'apgd':
    return apgd_lib.apgd(per_example_loss(experiment, variables, targets), images, epsilon,
                         steps=eval_config.apgd_steps, key=key)
  loss_fn = classification_loss(experiment, variables, targets)
  if attack == 'fgsm':
    return fgsm(loss_fn, images, epsilon)
  if attack == 'pgd20':
    return pgd(loss_fn, images, epsilon, steps=PGD20_STEPS,
               step_size=2.5 * epsilon / PGD20_STEPS, key=key)
  return pgd(loss_fn, images, epsilon, steps=eval_config.pgd_steps,
             step_size=pgd_step_size(eval_config, epsilon),
             key=key if eval_config.pgd_variant == 'madry' else None)


def attack_eval_step(variables, batch, index, epsilon, *, experiment, attack):
  """eval_loop.eval_step on attacked images: masked metric sums of the batch."""
  images, targets = experiment.task.inputs_and_targets(batch)
  # The random start depends on (seed, batch), never on the ε being tried.
  key = jax.random.fold_in(jax.random.PRNGKey(experiment.config.seed), index)
  adversarial = adversarial_images(experiment, variables, images, targets, attack, epsilon, key)
  outputs = experiment.model.apply(variables, adversarial, train=False)
  loss, metrics = experiment.task.per_example(outputs, targets, training=False)
  return tasks.summed(loss, metrics, batch['mask'])


def crafted_eval_step(variables, batch, index, epsilon, *, attack, source, targets):
  """Masked metric sums of the batch crafted by `attack` on the `source` experiment, one per
  `targets` experiment that classifies it; `variables` is (source's, (each target's))."""
  source_variables, target_variables = variables
  images, labels = source.task.inputs_and_targets(batch)
  # Seeded as attack_eval_step is, by the crafting model's seed.
  key = jax.random.fold_in(jax.random.PRNGKey(source.config.seed), index)
  adversarial = adversarial_images(source, source_variables, images, labels, attack, epsilon,
                                   key)
  sums = []
  for target, variables_of_target in zip(targets, target_variables):
    outputs = target.model.apply(variables_of_target, adversarial, train=False)
    loss, metrics = target.task.per_example(outputs, labels, training=False)
    sums.append(tasks.summed(loss, metrics, batch['mask']))
  return tuple(sums)


def crafted_accuracy(attack, epsilons, source, targets, eval_data):
  """[{ε label: accuracy} for each target] of the images `attack` crafts on `source`, an
  (experiment, variables) pair, at each (label, ε) of `epsilons`, classified by each
  (experiment, variables) of `targets`. The images are crafted once per batch for all targets;
  a target that is the source is attacked white-box."""
  step = eval_loop.compile_step(
      functools.partial(crafted_eval_step, attack=attack, source=source[0],
                        targets=tuple(experiment for experiment, _ in targets)),
      source[0].mesh, num_replicated_extra_args=1)
  variables = (source[1], tuple(target_variables for _, target_variables in targets))
  results = [{} for _ in targets]
  for label, epsilon in epsilons:
    sums = eval_loop.totals(step, variables, eval_data, source[0].mesh, jnp.float32(epsilon))
    for result, summed in zip(results, sums):
      result[_label(label)] = tasks.averaged(summed)['accuracy']
  return results


def evaluate_attacks(experiment, variables, eval_data, source=None):
  """{attack: {ε label (1/255 units, as a string): accuracy}} over the whole eval split; with
  `source`, an (experiment, variables) pair, {'transfer_' + attack: ...} of images crafted on
  that model instead."""
  config = experiment.config
  if source is not None:
    epsilons = parse_epsilons(config.eval.epsilons)
    return {f'transfer_{attack}': crafted_accuracy(attack, epsilons, source,
                                                   [(experiment, variables)], eval_data)[0]
            for attack in parse_attacks(config.eval.attacks)}
  results = {}
  for attack in parse_attacks(config.eval.attacks):
    # ε is an argument, so one compilation serves every ε.
    step = eval_loop.compile_step(
        functools.partial(attack_eval_step, experiment=experiment, attack=attack),
        experiment.mesh, num_replicated_extra_args=1)
    results[attack] = {}
    for label, epsilon in parse_epsilons(config.eval.epsilons):
      means = eval_loop.run(step, variables, eval_data, experiment.mesh, jnp.float32(epsilon))
      results[attack][_label(label)] = means['accuracy']
  return results


def _label(value):
  return f'{value:g}'


def plot_robustness(robustness, path, title=None):
  """Accuracy vs ε (units of 1/255), one line per attack, to a PNG."""
  plt = plotting.pyplot()
  fig, ax = plt.subplots(figsize=(4.5, 3.2))
  for attack, per_eps in robustness.items():
    eps = sorted(per_eps, key=float)
    ax.plot([float(e) for e in eps], [per_eps[e] for e in eps], marker='o', label=attack.upper())
  ax.set_xlabel('ε (×1/255)')
  ax.set_ylabel('test accuracy')
  ax.set_ylim(0, 1)
  ax.grid(alpha=0.3)
  ax.legend()
  if title:
    ax.set_title(title)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)
