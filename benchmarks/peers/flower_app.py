"""Flower 1.42: the same task as a ServerApp + ClientApp on Flower's simulation engine (Ray).

The ServerApp runs Flower's message-API ``FedAvg`` (which weights by the replies'
``num-examples``) with centralised evaluation of the held-out perplexity (``evaluate_fn``); the
ClientApp loads its own model and data once per Ray actor and trains its client's batches. Only
node sampling is replaced: Flower samples nodes with Python's ``random``, so the strategy instead
asks the schedule of the other variants which clients take part (the nodes told the server their
partition ids in a first query). Flower's default round also has a federated evaluation; it is
switched off (``fraction_evaluate=0``) since the peers evaluate centrally.
"""

from __future__ import annotations

import os
import time

from task import (
    MODEL,
    TaskSettings,
    build_datamodule,
    client_round_batches,
    heldout_perplexity,
    local_step,
    peft_lora_model,
)

_ACTOR: dict = {}  # per Ray actor process: the client's model and data, loaded once


def run(task: TaskSettings, queue, num_actors: int = 1) -> None:
    """Run the simulation; put the round-end times and perplexities on ``queue``."""
    from flwr.simulation import run_simulation

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    round_end: list[float] = []
    perplexity: list[float] = []
    run_simulation(
        server_app=server_app(task, round_end, perplexity),
        client_app=client_app(),
        num_supernodes=task_num_clients(),
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": num_actors, "num_gpus": 0, "include_dashboard": False},
        },
    )
    queue.put({"round_end": round_end, "perplexity": perplexity})


def task_num_clients() -> int:
    from task import PLAYS

    return len(PLAYS)


def server_app(task: TaskSettings, round_end: list[float], perplexity: list[float]):
    """The ServerApp: FedAvg over the scheduled nodes, central perplexity after every round."""
    from flwr.app import ArrayRecord, ConfigRecord, MetricRecord
    from flwr.serverapp import ServerApp
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    from lit_airlora.models import load_tokenizer

    app = ServerApp()

    @app.main()
    def main(grid, context) -> None:
        import torch

        torch.set_num_threads(task.threads)
        model = peft_lora_model(task)
        datamodule = build_datamodule(task, load_tokenizer(MODEL["model"], MODEL["gguf_file"]))
        val_loader = datamodule.val_dataloader()

        def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            set_peft_model_state_dict(model, arrays.to_torch_state_dict())
            perplexity.append(heldout_perplexity(model, val_loader))
            round_end.append(time.time())
            return MetricRecord({"perplexity": perplexity[-1]})

        strategy = scheduled_fedavg_class()(datamodule.schedule, partition_nodes(grid))
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(get_peft_model_state_dict(model)),
            num_rounds=task.rounds,
            train_config=ConfigRecord(task.as_dict()),
            evaluate_fn=evaluate,
        )

    return app


def partition_nodes(grid) -> dict[int, int]:
    """``{partition id: node id}``, asked of every node once."""
    from flwr.app import Message, MessageType, RecordDict

    node_ids = list(grid.get_node_ids())
    messages = [
        Message(content=RecordDict(), message_type=MessageType.QUERY, dst_node_id=node)
        for node in node_ids
    ]
    replies = grid.send_and_receive(messages)
    return {
        int(reply.content["partition"]["partition-id"]): reply.metadata.src_node_id
        for reply in replies
    }


def scheduled_fedavg_class():
    """Flower's FedAvg with node sampling from the shared schedule (Flower imported here)."""
    from flwr.app import MessageType, RecordDict
    from flwr.serverapp.strategy import FedAvg

    class ScheduledFedAvg(FedAvg):
        """Flower's FedAvg on the nodes the shared round schedule picks (no Python ``random``)."""

        def __init__(self, schedule, node_of: dict[int, int]):
            num = len(node_of)
            super().__init__(fraction_evaluate=0.0, min_available_nodes=num)
            self.schedule, self.node_of = schedule, node_of

        def configure_train(self, server_round, arrays, config, grid):
            config["server-round"] = server_round
            nodes = [self.node_of[c] for c in self.schedule.clients(server_round - 1)]
            record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
            return self._construct_messages(record, nodes, MessageType.TRAIN)

    return ScheduledFedAvg


def client_app():
    """The ClientApp: fresh AdamW, ``local_steps`` steps on the round's batches, adapter back."""
    from flwr.clientapp import ClientApp

    app = ClientApp()
    app.train()(train)
    app.query()(query)
    return app


def query(msg, context):
    from flwr.app import Message, MetricRecord, RecordDict

    partition = int(context.node_config["partition-id"])
    content = RecordDict({"partition": MetricRecord({"partition-id": partition})})
    return Message(content=content, reply_to=msg)


def train(msg, context):
    import torch
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    config = msg.content["config"]
    task = TaskSettings(**{k: config[k] for k in TaskSettings().as_dict()})
    model, datamodule = _actor_state(task)
    client = int(context.node_config["partition-id"])
    set_peft_model_state_dict(model, msg.content["arrays"].to_torch_state_dict())
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=task.learning_rate, weight_decay=0.0)
    model.train()
    for batch in client_round_batches(datamodule, int(config["server-round"]) - 1, client):
        local_step(model, optimizer, batch)
    content = RecordDict(
        {
            "arrays": ArrayRecord(get_peft_model_state_dict(model)),
            "metrics": MetricRecord({"num-examples": datamodule.client_sizes[client]}),
        }
    )
    return Message(content=content, reply_to=msg)


def _actor_state(task: TaskSettings):
    """The actor's peft model and set-up datamodule, built on its first message."""
    if not _ACTOR:
        import torch

        from lit_airlora.models import load_tokenizer

        torch.set_num_threads(task.threads)
        _ACTOR["model"] = peft_lora_model(task)
        tokenizer = load_tokenizer(MODEL["model"], MODEL["gguf_file"])
        _ACTOR["datamodule"] = build_datamodule(task, tokenizer)
    return _ACTOR["model"], _ACTOR["datamodule"]
