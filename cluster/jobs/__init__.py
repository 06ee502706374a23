"""The job model: its states and transitions (`states`), how its frames are selected and cut into
chunks (`plan`), and its score threshold (`thresholds`). Persistence is `cluster.store.jobs`; the
use cases (submit, resume, status) are `cluster.services.jobs`."""
