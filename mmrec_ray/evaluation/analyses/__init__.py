"""The paper's analyses (section 7, Table 4, Figs. 6–9) and a counterfactual modality ablation (issue 5).

Plain Python/PyTorch (no Ray): the Ray stage in ``mmrec_ray.pipeline.analyses`` only fans the retraining of the
shuffle study out over seeds and calls ``fit_shuffled_seed`` from here. One module per study, each writing under
``RUN_DIR/analyses/``:

- ``transforms``: the data transforms the studies apply (``shuffle_events``, ``keep_most_recent``,
  ``hide_modality``);
- ``shuffle`` — (a) event order (paper 7.2, Table 4);
- ``num_events`` — (b) metrics by number of most recent events (7.1, Fig. 7);
- ``tsne`` — (c) t-SNE of inputs and outputs (7.3, Figs. 8–9);
- (d) the HR@k / MAP@k curves (Fig. 6) are drawn by the aggregate stage (``figures/{map,hr}_at_k.*``);
- ``ablation`` — (e) the counterfactual modality ablation;
- ``common``: checkpoints, loading fitted models, scoring, output folders.

Every public name stays importable from ``mmrec_ray.evaluation.analyses`` itself.
"""

from mmrec_ray.evaluation.analyses.ablation import (
    ABLATION_COLUMNS,
    ablation_caption,
    ablation_markdown,
    modality_ablation,
    plot_ablation,
    with_ci_marks,
)
from mmrec_ray.evaluation.analyses.common import (
    ANALYSES_DIR,
    JOINT_MODELS,
    analyses_dir,
    available_models,
    checkpoint_params,
    checkpoint_seeds,
    fitted_params,
    load_fitted,
)
from mmrec_ray.evaluation.analyses.common import (
    _say as _say,  # private, kept importable from here
)
from mmrec_ray.evaluation.analyses.common import (
    _score_outcomes as _score_outcomes,  # private, kept importable from here
)
from mmrec_ray.evaluation.analyses.common import (
    _subset_names as _subset_names,  # private, kept importable from here
)
from mmrec_ray.evaluation.analyses.common import (
    _write_csv as _write_csv,  # private, kept importable from here
)
from mmrec_ray.evaluation.analyses.num_events import number_of_events, plot_by_number_of_events
from mmrec_ray.evaluation.analyses.shuffle import (
    Table4,
    fit_shuffled_seed,
    shuffle_predictions_dir,
    shuffle_seed_done,
    shuffle_study,
    write_shuffled_predictions,
)
from mmrec_ray.evaluation.analyses.shuffle import (
    _paired_tests as _paired_tests,  # private, kept importable from here
)
from mmrec_ray.evaluation.analyses.transforms import (
    MODALITY_KIND,
    hide_modality,
    keep_most_recent,
    shuffle_events,
)
from mmrec_ray.evaluation.analyses.transforms import (
    _with_events as _with_events,  # private, kept importable from here
)
from mmrec_ray.evaluation.analyses.tsne import (
    _plot_tsne as _plot_tsne,  # private, kept importable from here
)
from mmrec_ray.evaluation.analyses.tsne import (
    _sample_events as _sample_events,  # private, kept importable from here
)
from mmrec_ray.evaluation.analyses.tsne import (
    _tsne as _tsne,  # private, kept importable from here
)
from mmrec_ray.evaluation.analyses.tsne import (
    input_representation,
    output_representation,
    tsne_inputs,
    tsne_outputs,
)

__all__ = [
    "ABLATION_COLUMNS",
    "ANALYSES_DIR",
    "JOINT_MODELS",
    "MODALITY_KIND",
    "Table4",
    "ablation_caption",
    "ablation_markdown",
    "analyses_dir",
    "available_models",
    "checkpoint_params",
    "checkpoint_seeds",
    "fit_shuffled_seed",
    "fitted_params",
    "hide_modality",
    "input_representation",
    "keep_most_recent",
    "load_fitted",
    "modality_ablation",
    "number_of_events",
    "output_representation",
    "plot_ablation",
    "plot_by_number_of_events",
    "shuffle_events",
    "shuffle_predictions_dir",
    "shuffle_seed_done",
    "shuffle_study",
    "tsne_inputs",
    "tsne_outputs",
    "with_ci_marks",
    "write_shuffled_predictions",
]
