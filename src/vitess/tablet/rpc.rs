//! The [`TabletRpc`] trait: the TabletManager calls the engine makes, behind an object-safe seam.
//!
//! The engine holds an `Arc<dyn TabletRpc>`: the real [`super::TabletClient`] in production,
//! fakes in planner tests, and the same client pointed at vtsim in integration tests. Each raw
//! method maps to one RPC and takes the proto request plus an optional timeout (`None` = the
//! client's default for that method). The provided methods are the convenience calls the engine
//! actually wants (typed workflow views, health, parsed positions); fakes get them for free.

use std::time::Duration;

use async_trait::async_trait;

use super::error::{Method, TabletAddr, TabletError};
use super::gtid::Position;
use super::health::TabletHealth;
use super::stream::{CopyBookmark, WorkflowStreams, copy_state_query, parse_copy_state};
use crate::vitess::proto::binlogdata::VReplicationWorkflowState;
use crate::vitess::proto::tabletmanagerdata::{
    ApplySchemaRequest, ApplySchemaResponse, CreateVReplicationWorkflowRequest,
    CreateVReplicationWorkflowResponse, DeleteVReplicationWorkflowRequest,
    DeleteVReplicationWorkflowResponse, ExecuteFetchAsDbaRequest, ExecuteFetchAsDbaResponse,
    FullStatusResponse, GetSchemaRequest, GetSchemaResponse, HasVReplicationWorkflowsResponse,
    PrimaryPositionResponse, ReadVReplicationWorkflowRequest, ReadVReplicationWorkflowResponse,
    ReadVReplicationWorkflowsRequest, ReadVReplicationWorkflowsResponse,
    UpdateVReplicationWorkflowRequest, UpdateVReplicationWorkflowResponse, VReplicationExecRequest,
    VReplicationExecResponse, VReplicationWaitForPosRequest,
};

/// `cells` value meaning "keep the stored cells" in `UpdateVReplicationWorkflow` (a simulated
/// NULL). An *empty* list would clear them instead.
pub const KEEP_CELLS: &str = "NULL";
/// `tablet_types` value meaning "keep the stored tablet types" in `UpdateVReplicationWorkflow`.
pub const KEEP_TABLET_TYPES: i32 = -1;

/// An `UpdateVReplicationWorkflowRequest` that changes nothing: cells and tablet types carry the
/// "keep" sentinels and every optional field is unset. Set only what should change.
pub fn update_keeping_everything(workflow: &str) -> UpdateVReplicationWorkflowRequest {
    UpdateVReplicationWorkflowRequest {
        workflow: workflow.to_owned(),
        cells: vec![KEEP_CELLS.to_owned()],
        tablet_types: vec![KEEP_TABLET_TYPES],
        ..UpdateVReplicationWorkflowRequest::default()
    }
}

/// The TabletManager RPCs vtmove uses, one method per RPC.
#[async_trait]
pub trait TabletRpc: Send + Sync {
    /// `GetSchema`: table definitions (used to copy DDL from a source primary).
    async fn get_schema(
        &self,
        tablet: &TabletAddr,
        request: GetSchemaRequest,
        timeout: Option<Duration>,
    ) -> Result<GetSchemaResponse, TabletError>;

    /// `RefreshState`: make the tablet reload its Tablet and Shard records (denied tables).
    async fn refresh_state(
        &self,
        tablet: &TabletAddr,
        timeout: Option<Duration>,
    ) -> Result<(), TabletError>;

    /// `ApplySchema`: run DDL (creating target tables).
    async fn apply_schema(
        &self,
        tablet: &TabletAddr,
        request: ApplySchemaRequest,
        timeout: Option<Duration>,
    ) -> Result<ApplySchemaResponse, TabletError>;

    /// `ExecuteFetchAsDba`: run SQL as the DBA user (`LOCK TABLES` flush, drops, renames).
    async fn execute_fetch_as_dba(
        &self,
        tablet: &TabletAddr,
        request: ExecuteFetchAsDbaRequest,
        timeout: Option<Duration>,
    ) -> Result<ExecuteFetchAsDbaResponse, TabletError>;

    /// `PrimaryPosition`: the primary's current GTID position.
    async fn primary_position(
        &self,
        tablet: &TabletAddr,
        timeout: Option<Duration>,
    ) -> Result<PrimaryPositionResponse, TabletError>;

    /// `CreateVReplicationWorkflow`: insert one stream per BinlogSource (created Stopped).
    async fn create_vreplication_workflow(
        &self,
        tablet: &TabletAddr,
        request: CreateVReplicationWorkflowRequest,
        timeout: Option<Duration>,
    ) -> Result<CreateVReplicationWorkflowResponse, TabletError>;

    /// `DeleteVReplicationWorkflow`: delete a workflow's streams and copy state.
    async fn delete_vreplication_workflow(
        &self,
        tablet: &TabletAddr,
        request: DeleteVReplicationWorkflowRequest,
        timeout: Option<Duration>,
    ) -> Result<DeleteVReplicationWorkflowResponse, TabletError>;

    /// `HasVReplicationWorkflows`: whether any workflow exists on the tablet.
    async fn has_vreplication_workflows(
        &self,
        tablet: &TabletAddr,
        timeout: Option<Duration>,
    ) -> Result<HasVReplicationWorkflowsResponse, TabletError>;

    /// `ReadVReplicationWorkflows`: all workflows matching a filter.
    async fn read_vreplication_workflows(
        &self,
        tablet: &TabletAddr,
        request: ReadVReplicationWorkflowsRequest,
        timeout: Option<Duration>,
    ) -> Result<ReadVReplicationWorkflowsResponse, TabletError>;

    /// `ReadVReplicationWorkflow`: one workflow's streams.
    async fn read_vreplication_workflow(
        &self,
        tablet: &TabletAddr,
        request: ReadVReplicationWorkflowRequest,
        timeout: Option<Duration>,
    ) -> Result<ReadVReplicationWorkflowResponse, TabletError>;

    /// `UpdateVReplicationWorkflow`: change state, message, cells, tablet types, ... of a
    /// workflow's streams. Build requests with [`update_keeping_everything`].
    async fn update_vreplication_workflow(
        &self,
        tablet: &TabletAddr,
        request: UpdateVReplicationWorkflowRequest,
        timeout: Option<Duration>,
    ) -> Result<UpdateVReplicationWorkflowResponse, TabletError>;

    /// `VReplicationExec`: guarded SQL on the sidecar tables (copy_state, resharding_journal).
    async fn vreplication_exec(
        &self,
        tablet: &TabletAddr,
        request: VReplicationExecRequest,
        timeout: Option<Duration>,
    ) -> Result<VReplicationExecResponse, TabletError>;

    /// `VReplicationWaitForPos`: block until a stream reached a position. The timeout is the
    /// caller's budget for catching up (the cutover's), so pass it explicitly.
    async fn vreplication_wait_for_pos(
        &self,
        tablet: &TabletAddr,
        request: VReplicationWaitForPosRequest,
        timeout: Option<Duration>,
    ) -> Result<(), TabletError>;

    /// `FullStatus`: MySQL and replication status, plus the served type on v22+ tablets.
    async fn full_status(
        &self,
        tablet: &TabletAddr,
        timeout: Option<Duration>,
    ) -> Result<FullStatusResponse, TabletError>;

    /// The tablet's health, with unset post-v21 fields read as "not reported" (#18031).
    async fn health(&self, tablet: &TabletAddr) -> Result<TabletHealth, TabletError> {
        let response = self.full_status(tablet, None).await?;
        let status = response
            .status
            .ok_or_else(|| TabletError::InvalidResponse {
                tablet: tablet.clone(),
                method: Method::FullStatus,
                reason: "response has no status".into(),
            })?;
        Ok(TabletHealth::from_full_status(&status))
    }

    /// The primary position, parsed so it can be compared (I2).
    async fn position(&self, tablet: &TabletAddr) -> Result<Position, TabletError> {
        let response = self.primary_position(tablet, None).await?;
        Position::parse(&response.position).map_err(|e| TabletError::InvalidResponse {
            tablet: tablet.clone(),
            method: Method::PrimaryPosition,
            reason: format!("position {:?}: {e}", response.position),
        })
    }

    /// One workflow's streams, or `None` when the tablet has no such workflow.
    async fn read_workflow(
        &self,
        tablet: &TabletAddr,
        workflow: &str,
    ) -> Result<Option<WorkflowStreams>, TabletError> {
        let request = ReadVReplicationWorkflowRequest {
            workflow: workflow.to_owned(),
        };
        let response = self
            .read_vreplication_workflow(tablet, request, None)
            .await?;
        Ok(WorkflowStreams::from_proto(&response))
    }

    /// All workflows matching `request`, as typed views (empty responses dropped).
    async fn read_workflows(
        &self,
        tablet: &TabletAddr,
        request: ReadVReplicationWorkflowsRequest,
    ) -> Result<Vec<WorkflowStreams>, TabletError> {
        let response = self
            .read_vreplication_workflows(tablet, request, None)
            .await?;
        Ok(response
            .workflows
            .iter()
            .filter_map(WorkflowStreams::from_proto)
            .collect())
    }

    /// Latest copy bookmarks of the given streams, read from `<sidecar_db>.copy_state`
    /// (`""` = `_vt`).
    async fn copy_state(
        &self,
        tablet: &TabletAddr,
        sidecar_db: &str,
        stream_ids: &[i32],
    ) -> Result<Vec<CopyBookmark>, TabletError> {
        let query = copy_state_query(sidecar_db, stream_ids).map_err(|e| TabletError::Config {
            tablet: tablet.clone(),
            method: Method::VReplicationExec,
            reason: e.to_string(),
        })?;
        let response = self
            .vreplication_exec(tablet, VReplicationExecRequest { query }, None)
            .await?;
        let result = response.result.unwrap_or_default();
        parse_copy_state(&result).map_err(|e| TabletError::InvalidResponse {
            tablet: tablet.clone(),
            method: Method::VReplicationExec,
            reason: e.to_string(),
        })
    }

    /// A workflow's streams with their copy bookmarks attached, so copying, displayed state and
    /// lag are judged with the copy_state rows (a Running stream with rows left is copying).
    async fn observe_workflow(
        &self,
        tablet: &TabletAddr,
        workflow: &str,
        sidecar_db: &str,
    ) -> Result<Option<WorkflowStreams>, TabletError> {
        let Some(mut streams) = self.read_workflow(tablet, workflow).await? else {
            return Ok(None);
        };
        if !streams.streams.is_empty() {
            let bookmarks = self
                .copy_state(tablet, sidecar_db, &streams.stream_ids())
                .await?;
            streams.attach_copy_state(&bookmarks);
        }
        Ok(Some(streams))
    }

    /// Sets a workflow's state (and optionally its message), keeping everything else. Returns the
    /// number of stream rows changed.
    async fn set_workflow_state(
        &self,
        tablet: &TabletAddr,
        workflow: &str,
        state: VReplicationWorkflowState,
        message: Option<&str>,
    ) -> Result<u64, TabletError> {
        let mut request = update_keeping_everything(workflow);
        request.state = Some(state as i32);
        request.message = message.map(str::to_owned);
        let response = self
            .update_vreplication_workflow(tablet, request, None)
            .await?;
        Ok(response.result.map_or(0, |r| r.rows_affected))
    }

    /// Waits until stream `stream_id` has reached `position`, within `budget`.
    async fn wait_for_position(
        &self,
        tablet: &TabletAddr,
        stream_id: i32,
        position: &Position,
        budget: Duration,
    ) -> Result<(), TabletError> {
        let request = VReplicationWaitForPosRequest {
            id: stream_id,
            position: position.to_string(),
        };
        self.vreplication_wait_for_pos(tablet, request, Some(budget))
            .await
    }

    /// Whether any VReplication workflow exists on the tablet.
    async fn has_workflows(&self, tablet: &TabletAddr) -> Result<bool, TabletError> {
        Ok(self.has_vreplication_workflows(tablet, None).await?.has)
    }
}
