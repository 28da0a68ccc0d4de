"""/v1/experiments: declare, list, change shares, stop, and read the report (JSON or PNG)."""

from __future__ import annotations

from flask import Blueprint, Response, g, request

from recsvc.api import doc, json_response, read_json, services
from recsvc.schemas.common import ErrorBodySchema
from recsvc.schemas.experiments import (
    ExperimentListSchema,
    ExperimentOutSchema,
    ExperimentSchema,
    ExperimentUpdateSchema,
    ReportQuerySchema,
    ReportSchema,
)
from recsvc.security import ANALYST, allow

bp = Blueprint("experiments", __name__)
EXTENSION = "recsvc.experiments.schemas"


@bp.record_once
def _setup(state) -> None:
    state.app.extensions[EXTENSION] = {"create": ExperimentSchema(), "update": ExperimentUpdateSchema(),
                                       "report": ReportQuerySchema()}


def _schemas() -> dict:
    from flask import current_app

    return current_app.extensions[EXTENSION]


def _out(exp) -> dict:
    svc = services()
    return {**exp.as_dict(), "state": exp.state(svc.experiments.clock())}


@bp.post("/v1/experiments")
@doc("Declare an experiment", tag="experiments", body=ExperimentSchema,
     responses={201: ExperimentOutSchema, 409: ErrorBodySchema, 422: ErrorBodySchema, 503: ErrorBodySchema},
     description="Variants with shares summing to 1, exactly one of them the control (the champion with "
                 "default options). Each variant may name a model (id or alias) and ranking options. "
                 "Assignment is by customer (salted hash of the resolved customer id; anonymous visitors by "
                 "device), persisted at first sight, the same on every channel.")
@allow(ANALYST)
def create_experiment():
    svc = services()
    body = _schemas()["create"].load(read_json())
    exp = svc.experiments.create(body)
    g.log_fields = {"experiment_id": exp.experiment_id}
    return json_response(_out(exp), status=201)


@bp.get("/v1/experiments")
@doc("Experiments and their state", tag="experiments", responses={200: ExperimentListSchema, 503: ErrorBodySchema})
@allow(ANALYST)
def list_experiments():
    return json_response({"experiments": [_out(e) for e in services().experiments.list()]})


@bp.get("/v1/experiments/<experiment_id>")
@doc("One experiment", tag="experiments", responses={200: ExperimentOutSchema, 404: ErrorBodySchema})
@allow(ANALYST)
def get_experiment(experiment_id: str):
    return json_response(_out(services().experiments.get(experiment_id)))


@bp.put("/v1/experiments/<experiment_id>")
@doc("Change shares, end or eligibility", tag="experiments", body=ExperimentUpdateSchema,
     responses={200: ExperimentOutSchema, 404: ErrorBodySchema, 409: ErrorBodySchema, 422: ErrorBodySchema},
     description="New shares apply to customers not assigned yet; everyone assigned keeps their variant. "
                 "Variants, their models and options, the salt and the start cannot change.")
@allow(ANALYST)
def update_experiment(experiment_id: str):
    svc = services()
    body = _schemas()["update"].load(read_json())
    return json_response(_out(svc.experiments.update(experiment_id, body)))


@bp.post("/v1/experiments/<experiment_id>/stop")
@doc("Stop an experiment: everyone back on the champion", tag="experiments",
     responses={200: ExperimentOutSchema, 404: ErrorBodySchema}, body_required=False,
     description="Every instance serves the champion within RECSVC_EXPERIMENTS_POLL_S; the report stays.")
@allow(ANALYST)
def stop_experiment(experiment_id: str):
    exp = services().experiments.stop(experiment_id)
    g.log_fields = {"experiment_id": experiment_id}
    return json_response(_out(exp))


@bp.get("/v1/experiments/<experiment_id>/report")
@doc("Attributed results per variant and channel", tag="experiments", query=ReportQuerySchema,
     responses={200: ReportSchema, 404: ErrorBodySchema, 503: ErrorBodySchema},
     description="Impressions, click-through, acceptance, conversion and revenue per customer with 95% "
                 "intervals, per variant overall and per channel shown; lift over control with its interval "
                 "and p-value (tests named in `tests`); sample-ratio-mismatch check; `flags` lists a variant "
                 "better overall but worse on a channel. `?format=png` answers the chart (image/png).")
@allow(ANALYST)
def experiment_report(experiment_id: str):
    svc = services()
    q = _schemas()["report"].load(request.args.to_dict(flat=True))
    report = svc.experiments.report(experiment_id)
    if q["format"] == "png":
        from recsvc.core.experiment_chart import render_png

        return Response(render_png(report), mimetype="image/png")
    return json_response(report)
