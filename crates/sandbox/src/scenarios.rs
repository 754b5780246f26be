//! The scenarios the sandbox plays, step by step, with I1 checked after each step.

use super::*;

impl Sandbox {
    /// Plays `scenario` and reports. An error means the scenario could not be played (a step
    /// never converged); violations and lost writes are in the report.
    pub async fn play(&self, scenario: Scenario) -> anyhow::Result<Report> {
        let printer = self.spawn_progress();
        let result = self.play_inner(scenario).await;
        printer.cancel();
        result
    }

    async fn play_inner(&self, scenario: Scenario) -> anyhow::Result<Report> {
        let mut run = Run {
            sandbox: self,
            report: Report::default(),
            last: Instant::now(),
            desired: None,
        };
        self.apply_keyspaces().await?;
        run.step("keyspaces Ready").await?;
        self.apply_workflow().await?;
        run.wait("copy (CopyCompleted, Ready)", |wf| {
            is_true(wf, types::COPY_COMPLETED) && ready(wf)
        })
        .await?;
        let serving = match scenario {
            Scenario::Lifecycle => {
                run.patch(json!({"traffic": {"replica": "Target", "rdonly": "Target"}}))
                    .await?;
                run.wait("switch reads", |wf| {
                    is_true(wf, types::READS_SWITCHED) && ready(wf)
                })
                .await?;
                run.patch(json!({"traffic": {"primary": "Target"}})).await?;
                run.wait("switch writes", |wf| {
                    is_true(wf, types::WRITES_SWITCHED) && ready(wf)
                })
                .await?;
                let heals_before = run.heals().await;
                self.arm_roll()?;
                run.patch(
                    json!({"traffic": {"replica": "Source", "rdonly": "Source", "primary": "Source"}}),
                )
                .await?;
                run.wait("reverse + tablet roll + heal", move |wf| {
                    ready(wf)
                        && is_false(wf, types::WRITES_SWITCHED)
                        && is_false(wf, types::READS_SWITCHED)
                        && wf.status.as_ref().is_some_and(|s| s.heals > heals_before)
                })
                .await?;
                if self.fault_times().fired.is_none() {
                    bail!("the tablet roll was never injected: the reverse ran no write cutover");
                }
                run.switch_all("switch again").await?;
                run.patch_workflow(json!({"spec": {"lifecycle": "Complete"}}))
                    .await?;
                run.wait("complete", |wf| {
                    ready(wf) && phase(wf) == Some(WorkflowPhase::Completed)
                })
                .await?;
                "customer"
            }
            Scenario::Cancel => {
                run.patch_workflow(json!({"spec": {"lifecycle": "Cancel"}}))
                    .await?;
                run.wait("cancel", |wf| phase(wf) == Some(WorkflowPhase::Cancelled))
                    .await?;
                "commerce"
            }
            Scenario::SourceGone => {
                run.switch_all("switch all traffic").await?;
                for t in self.fleet.tablets() {
                    if t.keyspace() == "commerce" {
                        t.stop().await;
                    }
                }
                self.say("fault: every commerce tablet stopped");
                run.patch_workflow(json!({"spec": {
                    "lifecycle": "Complete",
                    "complete": {"ignoreSourceKeyspace": true},
                }}))
                .await?;
                run.wait("complete without the source", |wf| {
                    ready(wf) && phase(wf) == Some(WorkflowPhase::Completed)
                })
                .await?;
                "customer"
            }
            Scenario::CompleteKeepData => {
                self.complete_keep_data(&mut run).await?;
                "customer"
            }
        };
        if let Ok(wf) = run.api().get(WORKFLOW).await
            && let Some(status) = wf.status
        {
            run.report.heals = status.heals;
            run.report.last_heal = status
                .last_heal
                .and_then(|h| serde_json::to_string(&h).ok());
        }
        let last_step_done = self.probe_started.elapsed();
        tokio::time::sleep(AFTER_LAST_STEP).await;
        self.finish(&mut run.report, serving, Some(last_step_done))
            .await;
        run.report.wall = self.started.elapsed();
        Ok(run.report)
    }

    /// [`Scenario::CompleteKeepData`] after the copy.
    async fn complete_keep_data(&self, run: &mut Run<'_>) -> anyhow::Result<()> {
        run.switch_all("switch all traffic").await?;
        run.patch_workflow(json!({"spec": {
            "lifecycle": "Complete",
            "complete": {"keepData": true, "keepRoutingRules": true},
        }}))
        .await?;
        run.wait("complete keeping data and routing rules", |wf| {
            ready(wf) && phase(wf) == Some(WorkflowPhase::Completed)
        })
        .await?;
        let kept = self.kept_state().await?;
        self.say(&format!("kept: {kept}"));

        self.say("delete the workflow resource");
        self.workflow_api()
            .delete(WORKFLOW, &DeleteParams::default())
            .await
            .context("deleting the workflow")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.workflow_api().get_opt(WORKFLOW).await?.is_some() {
            if Instant::now() > deadline {
                bail!("the workflow resource is still there 60s after its deletion");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        run.step("delete the workflow resource").await?;

        let keyspaces: Api<Keyspace> = Api::namespaced(self.client.clone(), NAMESPACE);
        for name in ["commerce", "customer"] {
            let patch = json!({"spec": {"driftPolicy": "Repair"}});
            self.say(&format!("patch keyspace {name}: {patch}"));
            keyspaces
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .with_context(|| format!("patching Keyspace {name}"))?;
        }
        let until = Instant::now() + self.drift_watch;
        let mut reported = None;
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_secs(1)).await;
            run.check_i1("Repair watch").await?;
            let now = self.kept_state().await?;
            if now != kept {
                run.report.violations.push(format!(
                    "Repair changed what the completed move kept: {kept} became {now}"
                ));
                break;
            }
            if reported.is_none() {
                reported = keyspaces.get("commerce").await.ok().and_then(|ks| {
                    let status = ks.status?;
                    let c = find_condition(&status.conditions, types::TOPOLOGY_CONSISTENT)?;
                    (status.observed_generation == ks.metadata.generation && c.status == "False")
                        .then(|| format!("{}: {}", c.reason, c.message))
                });
                if let Some(drift) = &reported {
                    self.say(&format!(
                        "Keyspace commerce reports the kept state: {drift}"
                    ));
                }
            }
        }
        if reported.is_none() {
            bail!(
                "Keyspace commerce never reported the kept denial as drift within {:?}",
                self.drift_watch
            );
        }
        run.step(&format!(
            "Repair left the kept state alone for {:?}",
            self.drift_watch
        ))
        .await
    }

    /// What a `keepData` + `keepRoutingRules` completion leaves behind: the denied tables of the
    /// source's shards and the routing rules, as text to compare.
    async fn kept_state(&self) -> anyhow::Result<String> {
        let mut parts = Vec::new();
        for info in self
            .topo
            .list_shards("commerce")
            .await
            .context("reading commerce's shards")?
        {
            let denied: Vec<&str> =
                vtmove::vitess::routing::denied::primary_denied_tables(&info.shard).collect();
            parts.push(format!("commerce/{} denies {denied:?}", info.name));
        }
        let mut rules: Vec<String> = self
            .topo
            .get_routing_rules()
            .await
            .context("reading the routing rules")?
            .value
            .rules
            .iter()
            .map(|r| format!("{}->{}", r.from_table, r.to_tables.join(",")))
            .collect();
        rules.sort();
        parts.push(format!("rules {rules:?}"));
        Ok(parts.join("; "))
    }

    fn arm_roll(&self) -> anyhow::Result<()> {
        let replica = self.commerce_replica()?;
        self.arm(
            Fault::RollAndAbandon {
                downtime: Duration::from_millis(300),
            },
            &replica,
        );
        Ok(())
    }
}

/// A scenario in progress: times steps and checks I1 after each.
struct Run<'a> {
    sandbox: &'a Sandbox,
    report: Report,
    last: Instant,
    /// The workflow's spec as last read: I1 is still checked against it once the resource is
    /// deleted.
    desired: Option<vtmove::engine::Desired>,
}

impl Run<'_> {
    fn api(&self) -> Api<MoveTablesWorkflow> {
        self.sandbox.workflow_api()
    }

    async fn heals(&self) -> i64 {
        self.api()
            .get(WORKFLOW)
            .await
            .ok()
            .and_then(|wf| wf.status.map(|s| s.heals))
            .unwrap_or(0)
    }

    async fn patch(&self, spec: Value) -> anyhow::Result<()> {
        self.patch_workflow(json!({ "spec": spec })).await
    }

    async fn patch_workflow(&self, patch: Value) -> anyhow::Result<()> {
        self.sandbox.say(&format!("patch: {patch}"));
        self.sandbox.patch_workflow(&patch).await
    }

    /// Records a finished step and checks I1.
    async fn step(&mut self, name: &str) -> anyhow::Result<()> {
        let took = self.last.elapsed();
        self.sandbox.say(&format!("== step {name}: {took:.2?}"));
        self.report.steps.push((name.to_string(), took));
        self.check_i1(&format!("after {name}")).await?;
        self.last = Instant::now();
        Ok(())
    }

    /// Checks I1 against the workflow's spec (the last one read, once the resource is gone).
    async fn check_i1(&mut self, when: &str) -> anyhow::Result<()> {
        if let Ok(Some(wf)) = self.api().get_opt(WORKFLOW).await {
            self.desired = Some(
                vtmove::engine::Desired::from_spec(&wf.spec, WORKFLOW)
                    .map_err(|e| anyhow::anyhow!("the workflow's spec: {e}"))?,
            );
        }
        let Some(desired) = &self.desired else {
            return Ok(());
        };
        let found = vtmove::engine::invariants::check_single_writer_in_topology(
            &self.sandbox.topo,
            desired,
        )
        .await
        .context("reading the topology for the I1 check")?;
        self.report
            .violations
            .extend(found.iter().map(|v| format!("{when}: {v:?}")));
        Ok(())
    }

    /// Puts every traffic type on the target and waits until writes are switched and the
    /// workflow is Ready, recording the step as `name`.
    async fn switch_all(&mut self, name: &str) -> anyhow::Result<()> {
        self.patch(
            json!({"traffic": {"replica": "Target", "rdonly": "Target", "primary": "Target"}}),
        )
        .await?;
        self.wait(name, |wf| is_true(wf, types::WRITES_SWITCHED) && ready(wf))
            .await
    }

    /// Waits until `check` holds for the workflow, then records the step.
    async fn wait(
        &mut self,
        name: &str,
        check: impl Fn(&MoveTablesWorkflow) -> bool,
    ) -> anyhow::Result<()> {
        self.sandbox
            .wait_workflow(&format!("step {name}"), Duration::from_millis(50), check)
            .await?;
        self.step(name).await
    }
}
