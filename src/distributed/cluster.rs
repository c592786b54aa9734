//! A Ballista cluster that knows the extension: the scheduler's sessions, the executors'
//! functions and codecs, a client session sending its queries to a scheduler, and an
//! in-process cluster for tests and demos.
//!
//! What each process gets:
//!
//! | process   | functions | rules and planner | settings (`bedrock.*`) | codecs |
//! |-----------|-----------|-------------------|------------------------|--------|
//! | client    | the session's own | analyzer rules (plans are sent analyzed) | its session's | ours |
//! | scheduler | all, unbound | analyzer rules again (idempotent), the model planner, physical rules, [`DivideBudget`] | from the client | ours |
//! | executor  | all, unbound; bound ones arrive in the plan | — | from the client | ours |
//!
//! The scheduler plans with Ballista's static planner: its adaptive planner replaces the
//! session's physical rules, which the AI functions' operator and the budget division need.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ballista_core::config::BALLISTA_ADAPTIVE_PLANNER_ENABLED;
use ballista_core::extension::{
    SessionConfigExt, ballista_aggregate_functions, ballista_scalar_functions,
    ballista_window_functions,
};
use ballista_core::planner::BallistaQueryPlanner;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::serde::BallistaCodec;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::source_as_provider;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::protobuf::LogicalPlanNode;

use super::budget_share::DivideBudget;
use super::codec::{BedrockLogicalCodec, BedrockPhysicalCodec};
use super::engines::EngineRegistry;
use crate::catalog::Catalog;
use crate::extension::SessionStateBuilderBedrock;
use crate::plan::options::BedrockOptions;
use crate::plan::planner::BedrockQueryPlanner;
use crate::udf;

/// The port a scheduler listens on unless told otherwise (Ballista's default).
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

/// `config` ready for the cluster: Ballista's settings, the extension's `bedrock.*` options,
/// Ballista's static planner.
fn cluster_config(config: SessionConfig) -> SessionConfig {
    let mut config = config.upgrade_for_ballista();
    if config
        .options()
        .extensions
        .get::<BedrockOptions>()
        .is_none()
    {
        config = config.with_option_extension(BedrockOptions::default());
    }
    // Present in every Ballista configuration: setting it cannot fail.
    let _ = config
        .options_mut()
        .set(BALLISTA_ADAPTIVE_PLANNER_ENABLED, "false");
    config
}

/// The configuration of every session of a scheduler or executor: Ballista's, with the
/// extension's options registered so that the client's `bedrock.*` settings arrive.
#[must_use]
pub fn config_producer() -> SessionConfig {
    cluster_config(SessionConfig::new_with_ballista())
}

/// The scheduler's session for a client's configuration: Ballista's defaults plus the
/// extension (model planner, rules, functions, options) and [`DivideBudget`].
///
/// # Errors
/// When the runtime cannot be built.
pub fn scheduler_session(config: SessionConfig) -> Result<SessionState> {
    Ok(SessionStateBuilder::new()
        .with_default_features()
        .with_config(cluster_config(config))
        .with_runtime_env(Arc::new(RuntimeEnvBuilder::new().build()?))
        .with_optimizer_rules(ballista_core::optimizer::ballista_default_optimizer_rules())
        .with_scalar_functions(ballista_scalar_functions())
        .with_aggregate_functions(ballista_aggregate_functions())
        .with_window_functions(ballista_window_functions())
        .with_bedrock()
        .with_physical_optimizer_rule(Arc::new(DivideBudget))
        .build())
}

/// The functions an executor resolves by name: Ballista's and the extension's (bound AI
/// functions arrive with their binding in the plan).
#[must_use]
pub fn function_registry() -> BallistaFunctionRegistry {
    let mut registry = BallistaFunctionRegistry::default();
    let catalog = Arc::new(Catalog::default());
    for function in ballista_scalar_functions()
        .into_iter()
        .chain(udf::scalar_functions(&catalog))
    {
        registry
            .scalar_functions
            .insert(function.name().to_string(), function);
    }
    registry
}

/// The codecs of a process, building its engines into `engines`.
#[must_use]
pub fn codecs(
    engines: &Arc<EngineRegistry>,
) -> (Arc<BedrockLogicalCodec>, Arc<BedrockPhysicalCodec>) {
    (
        Arc::new(BedrockLogicalCodec::new(Arc::clone(engines))),
        Arc::new(BedrockPhysicalCodec::new(Arc::clone(engines))),
    )
}

/// The codecs of a process as Ballista takes them.
fn codec(engines: &Arc<EngineRegistry>) -> BallistaCodec {
    let (logical, physical) = codecs(engines);
    BallistaCodec::new(logical, physical)
}

/// Where a scheduler listens.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// The address to bind (default `127.0.0.1`).
    pub bind_host: String,
    /// The port (default 50050).
    pub port: u16,
    /// The host name executors and clients reach it by (default: `bind_host`).
    pub external_host: Option<String>,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            bind_host: "127.0.0.1".into(),
            port: DEFAULT_SCHEDULER_PORT,
            external_host: None,
        }
    }
}

/// Runs a scheduler with the extension until the process is stopped.
///
/// # Errors
/// A bad address, a port in use, or Ballista's own failures.
pub async fn run_scheduler(options: SchedulerOptions) -> Result<()> {
    let engines = EngineRegistry::for_planning();
    let (logical, physical) = codecs(&engines);
    let config = SchedulerConfig {
        bind_host: options.bind_host.clone(),
        bind_port: options.port,
        external_host: options
            .external_host
            .clone()
            .unwrap_or_else(|| options.bind_host.clone()),
        override_session_builder: Some(Arc::new(scheduler_session)),
        override_config_producer: Some(Arc::new(config_producer)),
        override_logical_codec: Some(logical),
        override_physical_codec: Some(physical),
        ..SchedulerConfig::default()
    };
    let address: SocketAddr = format!("{}:{}", options.bind_host, options.port)
        .parse()
        .map_err(|e| {
            DataFusionError::Configuration(format!(
                "scheduler address '{}:{}' is not valid ({e}): give --bind-host an IP address such as 127.0.0.1 or 0.0.0.0",
                options.bind_host, options.port
            ))
        })?;
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(ballista_error)?;
    start_server(cluster, address, Arc::new(config))
        .await
        .map_err(ballista_error)
}

/// An executor's settings.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The address to bind (default `127.0.0.1`).
    pub bind_host: String,
    /// The host name others reach it by (default: `bind_host`).
    pub external_host: Option<String>,
    /// The Arrow Flight port serving shuffle data (default 50051).
    pub port: u16,
    /// The gRPC port (default 50052).
    pub grpc_port: u16,
    /// The scheduler's host (default `127.0.0.1`).
    pub scheduler_host: String,
    /// The scheduler's port (default 50050).
    pub scheduler_port: u16,
    /// Tasks run at once (default: the machine's cores).
    pub concurrent_tasks: usize,
    /// Where shuffle files go (default: a temporary directory).
    pub work_dir: Option<String>,
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        Self {
            bind_host: "127.0.0.1".into(),
            external_host: None,
            port: 50051,
            grpc_port: 50052,
            scheduler_host: "127.0.0.1".into(),
            scheduler_port: DEFAULT_SCHEDULER_PORT,
            concurrent_tasks: std::thread::available_parallelism().map_or(2, usize::from),
            work_dir: None,
        }
    }
}

/// Runs an executor with the extension until the process is stopped (or the scheduler asks it
/// to stop). Its engines are built from this process's environment.
///
/// # Errors
/// A bad setting, a port in use, or Ballista's own failures.
pub async fn run_executor(options: ExecutorOptions) -> Result<()> {
    if options.concurrent_tasks == 0 {
        return Err(DataFusionError::Configuration(
            "--concurrent-tasks must be at least 1".into(),
        ));
    }
    let engines = EngineRegistry::new();
    let (logical, physical) = codecs(&engines);
    let config = ExecutorProcessConfig {
        bind_host: options.bind_host.clone(),
        external_host: Some(
            options
                .external_host
                .clone()
                .unwrap_or_else(|| options.bind_host.clone()),
        ),
        port: options.port,
        grpc_port: options.grpc_port,
        scheduler_host: options.scheduler_host.clone(),
        scheduler_port: options.scheduler_port,
        // Waits this long for the scheduler at start-up instead of failing at once.
        scheduler_connect_timeout_seconds: 30,
        vcores: options.concurrent_tasks,
        work_dir: options.work_dir.clone(),
        print_thread_info: false,
        override_function_registry: Some(Arc::new(function_registry())),
        override_config_producer: Some(Arc::new(config_producer)),
        override_logical_codec: Some(logical),
        override_physical_codec: Some(physical),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config))
        .await
        .map_err(ballista_error)
}

fn ballista_error(e: ballista_core::error::BallistaError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// `df://host:port` (or `http://host:port`, or `host:port`) as the scheduler's gRPC URL.
///
/// # Errors
/// Not a host with an optional port.
pub fn scheduler_url(address: &str) -> Result<String> {
    let rest = address
        .strip_prefix("df://")
        .or_else(|| address.strip_prefix("http://"))
        .unwrap_or(address)
        .trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad_address(address))?),
        None => (rest, DEFAULT_SCHEDULER_PORT),
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(bad_address(address));
    }
    Ok(format!("http://{host}:{port}"))
}

fn bad_address(address: &str) -> DataFusionError {
    DataFusionError::Configuration(format!(
        "'{address}' is not a scheduler address: write df://HOST:PORT, e.g. df://127.0.0.1:50050"
    ))
}

/// Whether a table's scan can run on the cluster: files (Parquet, CSV, JSON, Arrow, Avro) can;
/// in-memory tables and the extension's own tables (`bedrock_usage()`, the results of `SHOW`
/// statements) cannot.
fn distributes(scan: &datafusion::logical_expr::TableScan) -> bool {
    source_as_provider(&scan.source).is_ok_and(|p| p.downcast_ref::<ListingTable>().is_some())
}

/// Where a plan runs: on the cluster, or here because every table it reads lives here.
fn runs_here(plan: &LogicalPlan) -> Result<bool> {
    let (mut here, mut cluster) = (None, false);
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if distributes(scan) {
                cluster = true;
            } else if here.is_none() {
                here = Some(scan.table_name.to_string());
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    match (here, cluster) {
        (Some(table), true) => Err(DataFusionError::Plan(format!(
            "Table '{table}' lives in this process (an in-memory table or a table of the extension), and the query also reads files on the cluster: write the table to a file (COPY … TO 'file.parquet', then CREATE EXTERNAL TABLE) so that executors can read it, or query it on its own"
        ))),
        (Some(_), false) => Ok(true),
        (None, _) => Ok(false),
    }
}

/// The client's query planner: plans reading only tables that live in this process run here
/// (with the extension's planner); every other plan goes to the scheduler.
#[derive(Debug)]
struct ClusterQueryPlanner {
    remote: BallistaQueryPlanner<LogicalPlanNode>,
    here: BedrockQueryPlanner,
}

#[async_trait]
impl QueryPlanner for ClusterQueryPlanner {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if runs_here(plan)? {
            self.here.create_physical_plan(plan, session).await
        } else {
            let remote = self.remote.create_physical_plan(plan, session).await?;
            Ok(Arc::new(PlainErrors { inner: remote }))
        }
    }
}

/// The message inside the error of a job that failed on the cluster. Ballista reports it
/// through several layers of `Debug` (`… DataFusionError(Shared(External(DataFusionError(
/// Execution("message")))))`): this takes the innermost quoted message back out.
fn plain_job_error(message: &str) -> Option<String> {
    let start = message.rfind("(\"")? + 2;
    let mut text = String::new();
    let mut chars = message[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                'n' => text.push('\n'),
                't' => text.push('\t'),
                other => text.push(other),
            },
            '"' => break,
            c => text.push(c),
        }
    }
    let job = message
        .split_whitespace()
        .skip_while(|w| *w != "Job")
        .nth(1)
        .map(|id| format!(" (job {id})"))
        .unwrap_or_default();
    Some(format!("A task on the cluster failed{job}: {text}"))
}

/// The client's root of a plan run on the cluster: the same batches, and errors of tasks
/// given as their own message rather than Ballista's nested report.
#[derive(Debug)]
struct PlainErrors {
    inner: Arc<dyn ExecutionPlan>,
}

impl datafusion::physical_plan::DisplayAs for PlainErrors {
    fn fmt_as(
        &self,
        t: datafusion::physical_plan::DisplayFormatType,
        f: &mut std::fmt::Formatter,
    ) -> std::fmt::Result {
        self.inner.fmt_as(t, f)
    }
}

impl ExecutionPlan for PlainErrors {
    fn name(&self) -> &'static str {
        "ClusterQuery"
    }

    fn properties(&self) -> &Arc<datafusion::physical_plan::PlanProperties> {
        self.inner.properties()
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
        ) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.inner.apply_expressions(f)
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.inner.children()
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        #[expect(deprecated)]
        let inner = Arc::clone(&self.inner).with_new_children(children)?;
        Ok(Arc::new(Self { inner }))
    }

    fn metrics(&self) -> Option<datafusion::physical_plan::metrics::MetricsSet> {
        self.inner.metrics()
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<datafusion::execution::TaskContext>,
    ) -> Result<datafusion::execution::SendableRecordBatchStream> {
        use futures::TryStreamExt;
        let stream = self.inner.execute(partition, context)?;
        let schema = stream.schema();
        let plain = stream.map_err(|e| {
            let message = e.to_string();
            match plain_job_error(&message) {
                Some(plain) if message.contains("failed") => DataFusionError::Execution(plain),
                _ => e,
            }
        });
        Ok(Box::pin(
            datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, plain),
        ))
    }
}

/// A session that sends its queries to the scheduler at `address` (`df://host:port`), with
/// everything `state` has: the extension (engines, models, settings), tables and functions.
/// Models and engines are created here, as in a local session; queries reading files run on
/// the cluster, whose executors call Bedrock with their own credentials.
///
/// ```no_run
/// # async fn run() -> datafusion::error::Result<()> {
/// use datafusion::execution::SessionStateBuilder;
/// use datafusion_bedrock::SessionStateBuilderBedrock;
///
/// let state = SessionStateBuilder::new().with_default_features().with_bedrock().build();
/// let ctx = datafusion_bedrock::distributed::cluster_session("df://127.0.0.1:50050", state).await?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// A bad address, or no scheduler answering there within 10 seconds.
pub async fn cluster_session(address: &str, state: SessionState) -> Result<SessionContext> {
    let url = scheduler_url(address)?;
    let connect = SchedulerGrpcClient::connect(url.clone());
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) | Err(_) => {
            return Err(DataFusionError::Configuration(format!(
                "No Ballista scheduler answers at {address}: start one with `datafusion-bedrock scheduler --port PORT`, or check the host and port"
            )));
        }
    }
    let engines = EngineRegistry::new();
    let logical = Arc::new(BedrockLogicalCodec::new(Arc::clone(&engines)));
    let physical = Arc::new(BedrockPhysicalCodec::new(engines));
    let config = cluster_config(state.config().clone());
    let remote = BallistaQueryPlanner::<LogicalPlanNode>::with_extension(
        url,
        config.ballista_config(),
        Arc::clone(&logical) as _,
    );
    let planner = ClusterQueryPlanner {
        remote,
        here: BedrockQueryPlanner::wrapping(None),
    };
    let config = config
        .with_ballista_logical_extension_codec(logical)
        .with_ballista_physical_extension_codec(physical)
        .with_ballista_query_planner(Arc::new(planner));
    let before: Vec<_> = state.scalar_functions().values().cloned().collect();
    let state = SessionStateBuilder::new_from_existing(state)
        .with_config(config)
        .build();
    // Ballista's upgrade replaces the scalar functions with its own list: the session's are
    // registered again.
    let state =
        ballista_core::extension::SessionStateExt::upgrade_for_ballista(state, String::new())?;
    let ctx = SessionContext::new_with_state(state);
    for function in before {
        ctx.register_udf(function.as_ref().clone());
    }
    Ok(ctx)
}

/// A scheduler and executors in this process, on loopback ports, for tests and demos.
#[derive(Debug)]
pub struct LocalCluster {
    address: String,
    executors: Vec<Arc<EngineRegistry>>,
}

impl LocalCluster {
    /// Starts a scheduler and `executors` executors of `concurrent_tasks` task slots each.
    /// They run until the Tokio runtime stops. Each executor builds its own engines, as a
    /// separate process would.
    ///
    /// # Errors
    /// When a port cannot be bound or an executor cannot register.
    pub async fn start(executors: usize, concurrent_tasks: usize) -> Result<Self> {
        let scheduler_engines = EngineRegistry::for_planning();
        let address = ballista_scheduler::standalone::new_standalone_scheduler_with_builder(
            Arc::new(scheduler_session),
            Arc::new(config_producer),
            codec(&scheduler_engines),
        )
        .await
        .map_err(ballista_error)?;
        let url = format!("http://localhost:{}", address.port());
        let mut registries = Vec::with_capacity(executors);
        for _ in 0..executors {
            let scheduler = loop {
                match SchedulerGrpcClient::connect(url.clone()).await {
                    Ok(client) => break client,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            };
            let engines = EngineRegistry::new();
            ballista_executor::new_standalone_executor_from_builder(
                scheduler,
                concurrent_tasks.max(1),
                Arc::new(config_producer),
                Arc::new(|_: &SessionConfig| RuntimeEnvBuilder::new().build_arc()),
                codec(&engines),
                function_registry(),
            )
            .await
            .map_err(ballista_error)?;
            registries.push(engines);
        }
        Ok(Self {
            address: format!("df://localhost:{}", address.port()),
            executors: registries,
        })
    }

    /// The scheduler's address, for [`cluster_session`].
    #[must_use]
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The requests each executor has sent so far (retries included), in start order.
    #[must_use]
    pub fn executor_requests(&self) -> Vec<u64> {
        self.executors
            .iter()
            .map(|registry| {
                registry
                    .engines()
                    .iter()
                    .flat_map(|engine| engine.usage())
                    .map(|usage| usage.requests)
                    .sum()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_addresses_are_read_or_refused_with_the_form_to_write() {
        assert_eq!(
            scheduler_url("df://10.0.0.5:6000").unwrap(),
            "http://10.0.0.5:6000"
        );
        assert_eq!(
            scheduler_url("df://scheduler").unwrap(),
            "http://scheduler:50050"
        );
        assert_eq!(
            scheduler_url("localhost:7000/").unwrap(),
            "http://localhost:7000"
        );
        for bad in ["df://", "df://host:port", "df://user@host:1", "df://a b:1"] {
            assert_eq!(
                scheduler_url(bad).unwrap_err().to_string(),
                format!(
                    "Invalid or Unsupported Configuration: '{bad}' is not a scheduler address: write df://HOST:PORT, e.g. df://127.0.0.1:50050"
                )
            );
        }
    }

    #[test]
    fn a_task_error_is_taken_out_of_ballistas_report() {
        let report = r#"Job 038HMWA0Z8000 failed: Job failed due to stage 1 failed: Task failed due to runtime execution error: DataFusionError(Shared(External(DataFusionError(Execution("Model 'm' failed for the row whose prompt is \"q 1\": BudgetExceeded: stop")))))"#;
        assert_eq!(
            plain_job_error(report).as_deref(),
            Some(
                "A task on the cluster failed (job 038HMWA0Z8000): Model 'm' failed for the row whose prompt is \"q 1\": BudgetExceeded: stop"
            )
        );
        assert_eq!(plain_job_error("no quoted message here"), None);
    }

    #[test]
    fn the_scheduler_plans_statically_with_the_extension_whatever_the_client_asks() {
        let config = config_producer();
        let mut asked = config.clone();
        asked
            .options_mut()
            .set(BALLISTA_ADAPTIVE_PLANNER_ENABLED, "true")
            .unwrap();
        asked
            .options_mut()
            .set("bedrock.max_requests", "7")
            .unwrap();
        let state = scheduler_session(asked).unwrap();
        assert!(
            !state
                .config()
                .ballista_config()
                .adaptive_query_planner_enabled()
        );
        assert_eq!(
            BedrockOptions::of_config(state.config_options()).max_requests,
            Some(7)
        );
        let rules: Vec<&str> = state
            .physical_optimizers()
            .iter()
            .map(|r| r.name())
            .collect();
        let ours: Vec<&str> = rules
            .iter()
            .copied()
            .filter(|name| name.starts_with("bedrock_"))
            .collect();
        assert_eq!(
            ours,
            [
                "bedrock_model_input_order",
                "bedrock_run_ai_functions",
                "bedrock_divide_budget"
            ]
        );
        assert!(state.scalar_functions().contains_key("ai_complete"));
        assert!(
            function_registry()
                .scalar_functions
                .contains_key("ai_classify")
        );
        assert!(
            function_registry()
                .scalar_functions
                .contains_key("cosine_similarity")
        );
    }
}
