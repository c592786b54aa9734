//! How the extension's plan parts cross processes: model relations (logical [`ModelNode`],
//! physical [`ModelExec`]), the operator of AI functions ([`AiFunctionExec`]) and bound AI
//! functions (inside any expression).
//!
//! Each is written as an envelope: `DFBR`, a format version, a kind, a JSON header (the model
//! and engine specs, never a secret; a task's share of the budget) and the node's expressions
//! in DataFusion's protobuf form. Everything else goes to Ballista's own codecs; on the
//! physical side their bytes are wrapped in an envelope of their own kind, so that decoding
//! never has to guess whose bytes it reads.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::datasource::TableProvider;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, Extension, LogicalPlan, ScalarUDF, WindowUDF};
use datafusion::physical_expr::async_scalar_function::AsyncFuncExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::logical_plan::from_proto::parse_exprs;
use datafusion_proto::logical_plan::to_proto::serialize_exprs;
use datafusion_proto::physical_plan::from_proto::parse_physical_expr;
use datafusion_proto::physical_plan::to_proto::serialize_physical_expr_with_converter;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use datafusion_proto::protobuf::{LogicalExprNode, PhysicalExprNode};
use prost::Message;
use serde::{Deserialize, Serialize};

use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};

use super::engines::EngineRegistry;
use crate::bedrock::budget::Budget;
use crate::bedrock::engine::Engine;
use crate::inference::CreatedModel;
use crate::inference::spec::{CreatedModelSpec, EngineSpec};
use crate::plan::ai_function_exec::AiFunctionExec;
use crate::plan::model_exec::ModelExec;
use crate::plan::model_node::ModelNode;
use crate::plan::semantic_join::exec::SemanticJoinExec;
use crate::plan::semantic_join::node::SemanticJoin;
use crate::udf::call_spec::CallSpec;
use crate::udf::function::AiFunction;

const MAGIC: &[u8; 4] = b"DFBR";
const VERSION: u8 = 1;

/// What an envelope holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    /// Bytes of Ballista's codec.
    Inner = 0,
    /// A bound AI function.
    Call = 1,
    /// A logical model relation.
    ModelNode = 2,
    /// A model relation's operator.
    ModelExec = 3,
    /// The operator of AI functions.
    AiFunctionExec = 4,
}

impl Kind {
    fn of(byte: u8) -> Option<Self> {
        [
            Self::Inner,
            Self::Call,
            Self::ModelNode,
            Self::ModelExec,
            Self::AiFunctionExec,
        ]
        .into_iter()
        .find(|k| *k as u8 == byte)
    }
}

/// An envelope's contents: its kind, its JSON header and its other parts.
struct Envelope<'a> {
    kind: Kind,
    header: &'a [u8],
    parts: Vec<&'a [u8]>,
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Result<()> {
    let len = u32::try_from(len)
        .map_err(|_| DataFusionError::Internal("a plan part passes 4 GiB".into()))?;
    out.extend_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Writes an envelope of `kind` with `header` as JSON and `parts`.
fn seal(out: &mut Vec<u8>, kind: Kind, header: &impl Serialize, parts: &[Vec<u8>]) -> Result<()> {
    let header = serde_json::to_vec(header)
        .map_err(|e| DataFusionError::Internal(format!("cannot write a plan header: {e}")))?;
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(kind as u8);
    put_len(out, header.len())?;
    out.extend_from_slice(&header);
    put_len(out, parts.len())?;
    for part in parts {
        put_len(out, part.len())?;
        out.extend_from_slice(part);
    }
    Ok(())
}

/// Whether `buf` is one of our envelopes (of any version).
fn is_ours(buf: &[u8]) -> bool {
    buf.starts_with(MAGIC)
}

fn truncated() -> DataFusionError {
    DataFusionError::Plan(
        "A datafusion-bedrock plan part is truncated or damaged: check that the client, the scheduler and every executor run the same datafusion-bedrock version".into(),
    )
}

fn take<'a>(buf: &mut &'a [u8], len: usize) -> Result<&'a [u8]> {
    if buf.len() < len {
        return Err(truncated());
    }
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Ok(head)
}

fn take_len(buf: &mut &[u8]) -> Result<usize> {
    let bytes: [u8; 4] = take(buf, 4)?.try_into().map_err(|_| truncated())?;
    usize::try_from(u32::from_le_bytes(bytes)).map_err(|_| truncated())
}

/// Reads an envelope.
fn open(mut buf: &[u8]) -> Result<Envelope<'_>> {
    take(&mut buf, MAGIC.len())?;
    let version = take(&mut buf, 1)?[0];
    if version != VERSION {
        return Err(DataFusionError::Plan(format!(
            "This plan was written by a datafusion-bedrock whose plan format is version {version}; this build reads version {VERSION}: run the same datafusion-bedrock version on the client, the scheduler and every executor"
        )));
    }
    let kind_byte = take(&mut buf, 1)?[0];
    let kind = Kind::of(kind_byte).ok_or_else(|| {
        DataFusionError::Plan(format!(
            "This plan holds a datafusion-bedrock part of kind {kind_byte}, which this build does not know: run the same version everywhere"
        ))
    })?;
    let header_len = take_len(&mut buf)?;
    let header = take(&mut buf, header_len)?;
    let count = take_len(&mut buf)?;
    let mut parts = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let len = take_len(&mut buf)?;
        parts.push(take(&mut buf, len)?);
    }
    Ok(Envelope {
        kind,
        header,
        parts,
    })
}

impl Envelope<'_> {
    fn expect(&self, kind: Kind) -> Result<()> {
        if self.kind == kind {
            Ok(())
        } else {
            Err(DataFusionError::Internal(format!(
                "expected a datafusion-bedrock part of kind {kind:?}, found {:?}",
                self.kind
            )))
        }
    }

    fn header<T: for<'de> Deserialize<'de>>(&self) -> Result<T> {
        serde_json::from_slice(self.header).map_err(|e| {
            DataFusionError::Plan(format!(
                "A datafusion-bedrock plan part cannot be read ({e}): run the same datafusion-bedrock version on the client, the scheduler and every executor"
            ))
        })
    }
}

fn decode_proto<T: Message + Default>(bytes: &[u8]) -> Result<T> {
    T::decode(bytes).map_err(|e| {
        DataFusionError::Plan(format!(
            "A datafusion-bedrock plan part cannot be read ({e}): run the same datafusion-bedrock version on the client, the scheduler and every executor"
        ))
    })
}

/// A bound AI function's bytes, when `udf` is one.
fn encode_ai_function(udf: &ScalarUDF, buf: &mut Vec<u8>) -> Result<bool> {
    let Some(call) = AiFunction::of(udf).and_then(|f| f.call().cloned()) else {
        return Ok(false);
    };
    seal(buf, Kind::Call, &call.spec(), &[])?;
    Ok(true)
}

fn decode_ai_function(name: &str, buf: &[u8], engines: &EngineRegistry) -> Result<Arc<ScalarUDF>> {
    let envelope = open(buf)?;
    envelope.expect(Kind::Call)?;
    let spec: CallSpec = envelope.header()?;
    Ok(Arc::new(
        spec.udf(name, &|spec: &EngineSpec| engines.resolve(spec))?,
    ))
}

/// A budget's limits as one task gets them, with the query's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct BudgetShare {
    max_requests: Option<u64>,
    max_cost_usd: Option<f64>,
    query_max_requests: Option<u64>,
    query_max_cost_usd: Option<f64>,
}

impl BudgetShare {
    /// The share of a task that runs `partitions` partitions under `budget`.
    fn of(budget: &Budget, partitions: usize) -> Self {
        let (max_requests, max_cost_usd) = budget.share(partitions);
        let (query_max_requests, query_max_cost_usd) = budget.limits();
        Self {
            max_requests,
            max_cost_usd,
            query_max_requests,
            query_max_cost_usd,
        }
    }

    fn budget(self) -> Arc<Budget> {
        let share = (self.max_requests, self.max_cost_usd);
        let query = (self.query_max_requests, self.query_max_cost_usd);
        Arc::new(if share == query {
            Budget::new(share.0, share.1)
        } else {
            Budget::task_share(share, query)
        })
    }
}

/// A table reference as it travels.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Qualifier {
    catalog: Option<String>,
    schema: Option<String>,
    table: String,
}

impl Qualifier {
    fn of(reference: &TableReference) -> Self {
        Self {
            catalog: reference.catalog().map(str::to_string),
            schema: reference.schema().map(str::to_string),
            table: reference.table().to_string(),
        }
    }

    fn reference(self) -> TableReference {
        match (self.catalog, self.schema) {
            (Some(catalog), Some(schema)) => TableReference::full(catalog, schema, self.table),
            (None, Some(schema)) => TableReference::partial(schema, self.table),
            _ => TableReference::bare(self.table),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ModelNodeHeader {
    model: CreatedModelSpec,
    qualifier: Qualifier,
}

#[derive(Debug, Serialize, Deserialize)]
struct ModelExecHeader {
    model: CreatedModelSpec,
    fetch: Option<usize>,
    budget: BudgetShare,
}

#[derive(Debug, Serialize, Deserialize)]
struct AiFunctionExecHeader {
    names: Vec<String>,
    budget: BudgetShare,
}

/// The extension's logical codec around Ballista's: model relations and bound AI functions
/// are ours, every other node, table, file format and function is Ballista's.
#[derive(Debug)]
pub struct BedrockLogicalCodec {
    inner: Arc<dyn LogicalExtensionCodec>,
    engines: Arc<EngineRegistry>,
}

impl BedrockLogicalCodec {
    /// The codec around Ballista's, building engines into `engines`.
    #[must_use]
    pub fn new(engines: Arc<EngineRegistry>) -> Self {
        Self::wrapping(Arc::new(BallistaLogicalExtensionCodec::default()), engines)
    }

    /// The codec around `inner`, building engines into `engines`.
    #[must_use]
    pub fn wrapping(inner: Arc<dyn LogicalExtensionCodec>, engines: Arc<EngineRegistry>) -> Self {
        Self { inner, engines }
    }

    fn engine(&self, spec: &EngineSpec) -> crate::Result<Arc<Engine>> {
        self.engines.resolve(spec)
    }
}

impl LogicalExtensionCodec for BedrockLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        if !is_ours(buf) {
            return self.inner.try_decode(buf, inputs, ctx);
        }
        let envelope = open(buf)?;
        envelope.expect(Kind::ModelNode)?;
        let header: ModelNodeHeader = envelope.header()?;
        let [input] = inputs else {
            return Err(DataFusionError::Internal(format!(
                "a model relation has one input, the plan gives {}",
                inputs.len()
            )));
        };
        let args: Vec<LogicalExprNode> = envelope
            .parts
            .iter()
            .map(|part| decode_proto(part))
            .collect::<Result<_>>()?;
        let args = parse_exprs(&args, ctx, self)?;
        let call = CreatedModel::of_wire(header.model, &|spec: &EngineSpec| self.engine(spec))?;
        let node = ModelNode::try_new(call, input.clone(), args, header.qualifier.reference())?;
        Ok(Extension {
            node: Arc::new(node),
        })
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        if node.node.as_any().is::<SemanticJoin>() {
            return Err(semantic_join_on_a_cluster());
        }
        let Some(model) = node.node.as_any().downcast_ref::<ModelNode>() else {
            return self.inner.try_encode(node, buf);
        };
        let args = serialize_exprs(model.args(), self)?
            .iter()
            .map(Message::encode_to_vec)
            .collect::<Vec<_>>();
        let header = ModelNodeHeader {
            model: model.call().wire(),
            qualifier: Qualifier::of(model.qualifier()),
        };
        seal(buf, Kind::ModelNode, &header, &args)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        self.inner
            .try_decode_table_provider(buf, table_ref, schema, ctx)
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        self.inner.try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        if is_ours(buf) {
            return decode_ai_function(name, buf, &self.engines);
        }
        self.inner.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        if encode_ai_function(node, buf)? {
            return Ok(());
        }
        self.inner.try_encode_udf(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.inner.try_decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.inner.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udwf(node, buf)
    }
}

/// The extension's physical codec around Ballista's (whose shuffle operators go through it):
/// model operators, the operator of AI functions and bound AI functions are ours; every other
/// node's bytes are Ballista's, in an envelope of their own.
#[derive(Debug)]
pub struct BedrockPhysicalCodec {
    inner: Arc<dyn PhysicalExtensionCodec>,
    engines: Arc<EngineRegistry>,
}

impl BedrockPhysicalCodec {
    /// The codec around Ballista's, building engines into `engines`.
    #[must_use]
    pub fn new(engines: Arc<EngineRegistry>) -> Self {
        Self::wrapping(Arc::new(BallistaPhysicalExtensionCodec::default()), engines)
    }

    /// The codec around `inner`, building engines into `engines`.
    #[must_use]
    pub fn wrapping(inner: Arc<dyn PhysicalExtensionCodec>, engines: Arc<EngineRegistry>) -> Self {
        Self { inner, engines }
    }

    fn engine(&self, spec: &EngineSpec) -> crate::Result<Arc<Engine>> {
        self.engines.resolve(spec)
    }

    fn encode_exprs<'a>(
        &self,
        exprs: impl IntoIterator<Item = &'a Arc<dyn datafusion::physical_expr::PhysicalExpr>>,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Vec<Vec<u8>>> {
        exprs
            .into_iter()
            .map(|e| {
                serialize_physical_expr_with_converter(e, self, converter)
                    .map(|p| p.encode_to_vec())
            })
            .collect()
    }

    fn decode_exprs(
        &self,
        parts: &[&[u8]],
        ctx: &TaskContext,
        schema: &datafusion::arrow::datatypes::Schema,
    ) -> Result<Vec<Arc<dyn datafusion::physical_expr::PhysicalExpr>>> {
        parts
            .iter()
            .map(|part| {
                let proto: PhysicalExprNode = decode_proto(part)?;
                parse_physical_expr(&proto, ctx, schema, self)
            })
            .collect()
    }

    fn only_input(inputs: &[Arc<dyn ExecutionPlan>], what: &str) -> Result<Arc<dyn ExecutionPlan>> {
        match inputs {
            [input] => Ok(Arc::clone(input)),
            _ => Err(DataFusionError::Internal(format!(
                "{what} has one input, the plan gives {}",
                inputs.len()
            ))),
        }
    }
}

impl PhysicalExtensionCodec for BedrockPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !is_ours(buf) {
            return Err(DataFusionError::Internal(
                "a plan node without its datafusion-bedrock envelope: run the same codec on the client, the scheduler and every executor".into(),
            ));
        }
        let envelope = open(buf)?;
        match envelope.kind {
            Kind::Inner => {
                let inner = envelope.parts.first().copied().unwrap_or_default();
                self.inner.try_decode(inner, inputs, ctx, converter)
            }
            Kind::ModelExec => {
                let header: ModelExecHeader = envelope.header()?;
                let input = Self::only_input(inputs, "A model operator")?;
                let args = self.decode_exprs(&envelope.parts, ctx, &input.schema())?;
                let call =
                    CreatedModel::of_wire(header.model, &|spec: &EngineSpec| self.engine(spec))?;
                Ok(Arc::new(ModelExec::rebuilt(
                    call,
                    input,
                    args,
                    header.fetch,
                    header.budget.budget(),
                )))
            }
            Kind::AiFunctionExec => {
                let header: AiFunctionExecHeader = envelope.header()?;
                let input = Self::only_input(inputs, "The operator of AI functions")?;
                let schema = input.schema();
                if header.names.len() != envelope.parts.len() {
                    return Err(truncated());
                }
                let funcs = self.decode_exprs(&envelope.parts, ctx, &schema)?;
                let exprs = header
                    .names
                    .into_iter()
                    .zip(funcs)
                    .map(|(name, func)| AsyncFuncExpr::try_new(name, func, &schema).map(Arc::new))
                    .collect::<Result<Vec<_>>>()?;
                AiFunctionExec::replacing(exprs, input, header.budget.budget())?
                    .map(|exec| Arc::new(exec.with_portable_metrics()) as Arc<dyn ExecutionPlan>)
                    .ok_or_else(|| {
                        DataFusionError::Internal(
                            "the operator of AI functions arrived without an AI function".into(),
                        )
                    })
            }
            Kind::Call | Kind::ModelNode => Err(DataFusionError::Internal(format!(
                "a {:?} part where a plan node was expected",
                envelope.kind
            ))),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if let Some(model) = node.downcast_ref::<ModelExec>() {
            let header = ModelExecHeader {
                model: model.call().wire(),
                fetch: model.fetch(),
                budget: BudgetShare::of(model.budget(), model.calling_partitions()),
            };
            let args = self.encode_exprs(model.args(), converter)?;
            return seal(buf, Kind::ModelExec, &header, &args);
        }
        if let Some(exec) = node.downcast_ref::<AiFunctionExec>() {
            let exprs = exec.async_exprs();
            let header = AiFunctionExecHeader {
                names: exprs.iter().map(|e| e.name().to_string()).collect(),
                budget: BudgetShare::of(
                    exec.budget(),
                    exec.properties().output_partitioning().partition_count(),
                ),
            };
            let parts = self.encode_exprs(exprs.iter().map(|e| &e.func), converter)?;
            return seal(buf, Kind::AiFunctionExec, &header, &parts);
        }
        if node.downcast_ref::<SemanticJoinExec>().is_some() {
            return Err(semantic_join_on_a_cluster());
        }
        let mut inner = Vec::new();
        self.inner.try_encode(node, &mut inner, converter)?;
        seal(buf, Kind::Inner, &(), &[inner])
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        if is_ours(buf) {
            return decode_ai_function(name, buf, &self.engines);
        }
        self.inner.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        if encode_ai_function(node, buf)? {
            return Ok(());
        }
        self.inner.try_encode_udf(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.inner.try_decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.inner.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udwf(node, buf)
    }
}

#[cfg(all(test, feature = "emulator"))]
mod tests {
    use datafusion::common::tree_node::TreeNode;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::SessionContext;
    use datafusion_proto::bytes::{
        logical_plan_from_bytes_with_extension_codec, logical_plan_to_bytes_with_extension_codec,
        physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
    };

    use super::*;
    use crate::BedrockContext;
    use crate::bedrock::config::CredentialSource;
    use crate::distributed::cluster::{config_producer, scheduler_session};
    use crate::emulator::{Emulator, EmulatorConfig};

    const SECRET: &str = "wJalrXUtnFEMIsecretKEY";
    const KEY_ID: &str = "AKIDROUNDTRIP";

    /// A session with an engine given inline keys, models using every option, and a CSV table.
    async fn session(emulator: &Emulator, dir: &std::path::Path) -> BedrockContext {
        std::fs::write(dir.join("t.csv"), "q\nParis\nOslo\n").unwrap();
        let ctx = BedrockContext::new().with_default_endpoint(emulator.url());
        for sql in [
            format!("CREATE ML_ENGINE e FROM bedrock USING aws_access_key_id = '{KEY_ID}', aws_secret_access_key = '{SECRET}', max_concurrency = 7"),
            "CREATE MODEL m PREDICT answer USING engine = 'e', prompt_template = 'Q: {{q}}', max_tokens = 50, temperature = 0.2, system_prompt = 'Be brief', output_schema = 'city STRING, population INT', on_error = 'null', provenance = true".to_string(),
            "CREATE MODEL talk PREDICT answer USING engine = 'e', mode = 'conversational-full', max_history_rows = 5, question_column = 'q'".to_string(),
            format!("CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '{}/t.csv' OPTIONS ('format.has_header' 'true')", dir.display()),
        ] {
            ctx.sql(&sql).await.unwrap().collect().await.unwrap();
        }
        ctx
    }

    /// A scheduler's session and codecs, with engines of their own.
    fn from_scratch() -> (
        SessionContext,
        BedrockLogicalCodec,
        BedrockPhysicalCodec,
        Arc<EngineRegistry>,
    ) {
        let engines = EngineRegistry::new();
        let ctx = SessionContext::new_with_state(scheduler_session(config_producer()).unwrap());
        (
            ctx,
            BedrockLogicalCodec::new(Arc::clone(&engines)),
            BedrockPhysicalCodec::new(Arc::clone(&engines)),
            engines,
        )
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn every_node_and_function_round_trips_without_its_secrets() {
        let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ctx = session(&emulator, dir.path()).await;
        let queries = [
            "SELECT * FROM t AS d JOIN m AS x",
            "SELECT d.q, x.answer FROM t AS d JOIN talk AS x LIMIT 1",
            "SELECT ai_complete('m', q) AS a, ai_filter('amazon.nova-micro-v1:0', 'Is ' || q || ' a city?', '{\"on_error\": \"null\"}') AS f, ai_classify('amazon.nova-micro-v1:0', q, ['city', 'country']) AS c, ai_embed('amazon.titan-embed-text-v2:0', q, '{\"dimensions\": 256}') AS v, predict_talk(q) AS p FROM t WHERE ai_filter('amazon.nova-micro-v1:0', q)",
        ];
        let (here_logical, here_physical) = (
            BedrockLogicalCodec::new(EngineRegistry::new()),
            BedrockPhysicalCodec::new(EngineRegistry::new()),
        );
        for sql in queries {
            let (scratch, logical, physical, engines) = from_scratch();
            let plan = ctx.sql(sql).await.unwrap().into_optimized_plan().unwrap();
            let bytes = logical_plan_to_bytes_with_extension_codec(&plan, &here_logical).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(SECRET) && !text.contains(KEY_ID),
                "{sql}: {text}"
            );
            let decoded =
                logical_plan_from_bytes_with_extension_codec(&bytes, &scratch.task_ctx(), &logical)
                    .unwrap();
            assert_eq!(
                decoded.display_indent().to_string(),
                plan.display_indent().to_string(),
                "{sql}"
            );

            let exec = ctx
                .session()
                .state()
                .create_physical_plan(&plan)
                .await
                .unwrap();
            let bytes =
                physical_plan_to_bytes_with_extension_codec(Arc::clone(&exec), &here_physical)
                    .unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(SECRET) && !text.contains(KEY_ID),
                "{sql}: {text}"
            );
            let decoded = physical_plan_from_bytes_with_extension_codec(
                &bytes,
                &scratch.task_ctx(),
                &physical,
            )
            .unwrap();
            assert_eq!(
                displayable(decoded.as_ref()).indent(true).to_string(),
                displayable(exec.as_ref()).indent(true).to_string(),
                "{sql}"
            );
            assert_eq!(decoded.schema(), exec.schema(), "{sql}");

            // The decoding process built its own engine: same settings, its own credentials.
            let built = engines.engines();
            assert_eq!(built.len(), 1, "{sql}");
            assert_eq!(built[0].name(), "e");
            assert_eq!(built[0].config().max_concurrency, 7);
            assert_eq!(
                built[0].config().credentials,
                CredentialSource::DefaultChain
            );
            assert_eq!(
                built[0].config().endpoint_url.as_deref(),
                Some(emulator.url())
            );
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn bound_functions_come_back_with_the_same_binding() {
        let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ctx = session(&emulator, dir.path()).await;
        let plan = ctx
            .sql("SELECT ai_classify('m', q, ['a', 'b']), ai_embed('amazon.titan-embed-text-v2:0', q), predict_m(q) FROM t")
            .await
            .unwrap()
            .into_optimized_plan()
            .unwrap();
        let mut functions = Vec::new();
        plan.apply_expressions(|expr| {
            expr.apply(|e| {
                if let datafusion::logical_expr::Expr::ScalarFunction(f) = e {
                    functions.push(Arc::clone(&f.func));
                }
                Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
            })
        })
        .unwrap();
        assert_eq!(functions.len(), 3);
        let (_, logical, physical, _) = from_scratch();
        for function in functions {
            let call = AiFunction::of(&function)
                .and_then(|f| f.call().cloned())
                .unwrap();
            for (encoded, decoded) in [
                {
                    let mut buf = Vec::new();
                    logical.try_encode_udf(&function, &mut buf).unwrap();
                    let back = logical.try_decode_udf(function.name(), &buf).unwrap();
                    (buf, back)
                },
                {
                    let mut buf = Vec::new();
                    physical.try_encode_udf(&function, &mut buf).unwrap();
                    let back = physical.try_decode_udf(function.name(), &buf).unwrap();
                    (buf, back)
                },
            ] {
                assert!(encoded.starts_with(MAGIC));
                let back = AiFunction::of(&decoded)
                    .and_then(|f| f.call().cloned())
                    .unwrap();
                assert_eq!(decoded.name(), function.name());
                assert_eq!(back.spec(), call.spec());
                assert_eq!(back.describe(), call.describe());
                assert_eq!(back.value_type(), call.value_type());
            }
        }
    }

    #[test]
    fn damaged_or_foreign_parts_are_refused_with_a_reason() {
        let engines = EngineRegistry::new();
        let logical = BedrockLogicalCodec::new(engines);
        let too_new = [b'D', b'F', b'B', b'R', 9, 1, 0, 0, 0, 0];
        assert_eq!(
            logical
                .try_decode_udf("ai_complete", &too_new)
                .unwrap_err()
                .to_string(),
            "Error during planning: This plan was written by a datafusion-bedrock whose plan format is version 9; this build reads version 1: run the same datafusion-bedrock version on the client, the scheduler and every executor"
        );
        let truncated = [b'D', b'F', b'B', b'R', 1, 1, 200, 0, 0, 0, b'{'];
        assert_eq!(
            logical
                .try_decode_udf("ai_complete", &truncated)
                .unwrap_err()
                .to_string(),
            "Error during planning: A datafusion-bedrock plan part is truncated or damaged: check that the client, the scheduler and every executor run the same datafusion-bedrock version"
        );
        let mut unknown = Vec::new();
        seal(
            &mut unknown,
            Kind::Call,
            &serde_json::json!({"Text": {"function": "ai_translate"}}),
            &[],
        )
        .unwrap();
        let error = logical
            .try_decode_udf("ai_translate", &unknown)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(
                "Error during planning: A datafusion-bedrock plan part cannot be read ("
            ),
            "{error}"
        );
        assert!(error.ends_with("): run the same datafusion-bedrock version on the client, the scheduler and every executor"), "{error}");
    }
}

/// The error of a semantic join sent to a cluster: its plan parts have no codec yet.
fn semantic_join_on_a_cluster() -> DataFusionError {
    DataFusionError::NotImplemented(
        "an AI function over two relations (the semantic join) does not run on a cluster yet: run the query in one process (a session or shell without --cluster)".into(),
    )
}
