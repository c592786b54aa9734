//! A batch of rows fanned out to requests and back: inputs grouped by cache key (a repeat of an
//! earlier row costs nothing), cached answers served, the rest sent through a window of the
//! limiter's concurrency (each distinct request with its retries and budget), and every
//! distinct answer spread back to the rows that asked for it.

use std::sync::Arc;

use futures::{FutureExt, StreamExt};

use super::{CallOptions, DEFAULT_TOKEN_RESERVATION, Engine, ModelTarget, RowResults, cost_usd};
use crate::bedrock::budget::Reservation;
use crate::bedrock::cache::{CacheKey, EmbedInput, KeyMap, Source, cache_key};
use crate::bedrock::families::{self, EmbedOptions, ModelFamily};
use crate::bedrock::limiter::Limiter;
use crate::bedrock::prompt_cache::{CacheTtl, cached_tokens_usd};
use crate::bedrock::request::{CallInfo, EmbedResponse, TextRequest, TextResponse};
use crate::bedrock::retry::{Attempts, BudgetGuard, CallFailure};
use crate::bedrock::usage::{ModelCounters, token_shares};
use crate::error::{Error, Result};

impl Engine {
    /// Answers a batch of requests, one result per input in input order (`None` for `None`
    /// inputs). Identical requests are sent once; cached answers cost nothing; up to the
    /// limiter's concurrency run at once. Dropping the future stops sending new requests.
    pub async fn generate(
        self: &Arc<Self>,
        target: &ModelTarget,
        requests: &[Option<TextRequest>],
    ) -> RowResults<TextResponse> {
        self.generate_with(target, requests, &CallOptions::default())
            .await
    }

    /// [`Engine::generate`] under a query's [`CallOptions`] (its budget). Each answer's
    /// [`TextResponse::call`] says whether it cost a request, and its retries and latency.
    pub async fn generate_with(
        self: &Arc<Self>,
        target: &ModelTarget,
        requests: &[Option<TextRequest>],
        options: &CallOptions,
    ) -> RowResults<TextResponse> {
        let counters = self.usage.model(&target.model_id);
        let limiter = self.limiter(&target.model_id);
        let scope = self.cache_scope().await;
        let groups = group_by_key(requests.iter().map(|r| {
            r.as_ref()
                .map(|r| cache_key(&scope, target.api.name(), &target.model_id, r))
        }));
        counters.deduplicated(groups.duplicates);
        // Each request's future is made only when a slot in the window is free: a request
        // future holds the SDK call's whole state (kilobytes), so making a batch's worth up
        // front costs a large allocation and copy per batch. The stream's items are plain
        // slot numbers (an item borrowing data would keep the compiler from proving the batch
        // future `Send`), and each future is boxed where it is made.
        let mut answers: Vec<Shared<TextResponse>> = vec![None; groups.distinct.len()];
        if options.execution.gathers() {
            self.answer_by_jobs(target, requests, &groups, &mut answers, &counters, options)
                .await;
        }
        let mut slots: Vec<usize> = (0..groups.distinct.len())
            .filter(|slot| answers[*slot].is_none() && requests[groups.distinct[*slot].1].is_some())
            .collect();
        // Requests sharing a prefix go one after the other (sorted by their text), so the
        // first writes Bedrock's prompt cache and the rest read it; answers keep input order.
        if !options.keep_order {
            slots.sort_by(|a, b| {
                let text = |slot: &usize| requests[groups.distinct[*slot].1].as_ref();
                match (text(a), text(b)) {
                    (Some(a), Some(b)) => a.prefix_order(b),
                    _ => std::cmp::Ordering::Equal,
                }
            });
        }
        let (limiter, counters, groups_ref) = (&limiter, &counters, &groups);
        let mut stream = futures::stream::iter(slots)
            .map(|slot| {
                let (key, first) = groups_ref.distinct[slot];
                async move {
                    match &requests[first] {
                        Some(request) => Some(
                            self.answer_distinct(
                                slot, key, target, request, limiter, counters, options,
                            )
                            .await,
                        ),
                        None => None,
                    }
                }
                .boxed()
            })
            .buffer_unordered(limiter.ceiling())
            .filter_map(std::future::ready);
        while let Some((slot, result)) = stream.next().await {
            answers[slot] = Some(result);
        }
        let mut rows = spread(&groups.slots, &answers);
        // A row repeating an earlier row of the batch was answered without a request.
        for (row, slot) in groups.slots.iter().enumerate() {
            if let (Some(slot), Some(Ok(answer))) = (slot, rows[row].as_mut())
                && groups.distinct[*slot].1 != row
            {
                answer.call = CallInfo {
                    deduplicated: true,
                    ..CallInfo::default()
                };
            }
        }
        rows
    }

    /// The response cache's answers to `requests`, each marked as a cache hit (`None` where
    /// the cache holds none), the cache's scope resolved once.
    pub async fn cached_answers(
        &self,
        target: &ModelTarget,
        requests: &[&TextRequest],
    ) -> Vec<Option<TextResponse>> {
        let scope = self.cache_scope().await;
        let counters = self.usage.model(&target.model_id);
        requests
            .iter()
            .map(|request| {
                let key = cache_key(&scope, target.api.name(), &target.model_id, *request);
                let answer = self.text_cache.get(&key)?;
                counters.cache_hit();
                Some(served_from_cache(&answer))
            })
            .collect()
    }

    /// Bedrock's count of each request's input tokens (`CountTokens`, which is free: no budget
    /// or limiter slot is taken), sent together.
    ///
    /// # Errors
    /// The first request Bedrock could not count, explained.
    pub async fn count_input_tokens(
        &self,
        target: &ModelTarget,
        requests: &[TextRequest],
    ) -> std::result::Result<Vec<u64>, CallFailure> {
        let counts = futures::future::join_all(
            requests
                .iter()
                .map(|r| Box::pin(self.count_tokens_once(&target.model_id, r))),
        )
        .await;
        counts
            .into_iter()
            .map(|c| c.map_err(|f| self.explained(f)))
            .collect()
    }

    /// Counts `n` inputs answered by an earlier identical input of their batch (rows a caller
    /// grouped itself, as packing does).
    pub fn count_repeats(&self, model_id: &str, n: u64) {
        self.usage.model(model_id).deduplicated(n);
    }

    /// Keeps answers obtained another way (one item of a packed request each) in the response
    /// cache, each under its own request's key, in one write.
    pub async fn remember_answers(
        &self,
        target: &ModelTarget,
        answers: impl IntoIterator<Item = (&TextRequest, TextResponse)>,
    ) {
        let scope = self.cache_scope().await;
        let values = answers
            .into_iter()
            .map(|(request, mut answer)| {
                answer.call = CallInfo::default();
                (
                    cache_key(&scope, target.api.name(), &target.model_id, request),
                    Arc::new(answer),
                )
            })
            .collect();
        self.text_cache.insert_all(values);
    }

    /// Batch and auto execution: cached answers served (looked up once here, whichever way
    /// the rest goes), and the distinct uncached requests answered by batch jobs when there
    /// are enough of them (see
    /// [`Execution::uses_jobs`](crate::bedrock::batch::Execution::uses_jobs)); otherwise
    /// they are left to go on demand. Requests with a forced tool
    /// (structured output), which batch jobs do not take, always go on demand.
    async fn answer_by_jobs(
        self: &Arc<Self>,
        target: &ModelTarget,
        requests: &[Option<TextRequest>],
        groups: &Groups,
        answers: &mut [Shared<TextResponse>],
        counters: &ModelCounters,
        options: &CallOptions,
    ) {
        let mut cached = Vec::new();
        let mut work = Vec::new();
        for (slot, (key, first)) in groups.distinct.iter().enumerate() {
            let Some(request) = requests[*first].as_ref().filter(|r| r.tool.is_none()) else {
                continue;
            };
            match self.text_cache.get(key) {
                Some(answer) => cached.push((slot, answer)),
                None => work.push((slot, *key, request)),
            }
        }
        for (slot, answer) in cached {
            counters.cache_hit();
            answers[slot] = Some(Ok(Arc::new(served_from_cache(&answer))));
        }
        if !options
            .execution
            .uses_jobs(work.len(), options.min_batch_rows())
        {
            return;
        }
        for (slot, result) in self.answer_in_batch(target, &work, counters, options).await {
            answers[slot] = Some(result);
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn answer_distinct(
        self: &Arc<Self>,
        slot: usize,
        key: CacheKey,
        target: &ModelTarget,
        request: &TextRequest,
        limiter: &Arc<Limiter>,
        counters: &ModelCounters,
        options: &CallOptions,
    ) -> (
        usize,
        std::result::Result<Arc<TextResponse>, Arc<CallFailure>>,
    ) {
        let fetch = self.call_text(target, request, limiter, counters, options);
        let (result, source) = self.text_cache.get_or_fetch(key, fetch).await;
        if source != Source::Fetched
            && let Ok(answer) = &result
        {
            counters.cache_hit();
            return (slot, Ok(Arc::new(served_from_cache(answer))));
        }
        (slot, result)
    }

    async fn call_text(
        self: &Arc<Self>,
        target: &ModelTarget,
        request: &TextRequest,
        limiter: &Arc<Limiter>,
        counters: &ModelCounters,
        options: &CallOptions,
    ) -> std::result::Result<TextResponse, CallFailure> {
        let output_reserve = request
            .params
            .max_tokens
            .map_or(DEFAULT_TOKEN_RESERVATION, u64::from);
        let input_estimate = request.estimated_input_tokens();
        let price = self.usage.price(&target.model_id);
        let budget = options.budget.as_ref().map(|budget| BudgetGuard {
            budget,
            estimate_usd: cost_usd(price, input_estimate, output_reserve),
        });
        let (mut response, attempts) = self
            .retry
            .run(
                &target.model_id,
                limiter,
                counters,
                input_estimate + output_reserve,
                budget.as_ref(),
                |reservation| async move {
                    let response = match reservation {
                        None => self.call_text_once(target, request).await?,
                        Some(reservation) => {
                            self.call_text_admitted(target, request, reservation, price)
                                .await?
                        }
                    };
                    let (input, output) = (response.input_tokens, response.output_tokens);
                    Ok((response, input, output))
                },
            )
            .await
            .map_err(|f| self.explained(f))?;
        let (read, written) = (
            response.call.cache_read_tokens,
            response.call.cache_write_tokens,
        );
        counters.prompt_cache(
            read,
            written,
            request.cache.as_ref().and_then(|c| c.ttl) == Some(CacheTtl::OneHour),
        );
        response.call = CallInfo {
            cache_hit: false,
            deduplicated: false,
            retries: attempts.retries,
            throttles: attempts.throttles,
            latency_ms: attempts.latency_ms,
            batch_job: None,
            service_tier: response.call.service_tier.take(),
            cache_read_tokens: read,
            cache_write_tokens: written,
            packed_rows: 0,
            packed_first: false,
        };
        Ok(response)
    }

    /// One attempt admitted by a query's budget, settled by a task of its own (see
    /// [`settled`]).
    async fn call_text_admitted(
        self: &Arc<Self>,
        target: &ModelTarget,
        request: &TextRequest,
        reservation: Reservation,
        price: Option<(f64, f64)>,
    ) -> std::result::Result<TextResponse, CallFailure> {
        let (engine, target, request) = (Arc::clone(self), target.clone(), request.clone());
        let (model_id, ttl) = (
            target.model_id.clone(),
            request.cache.as_ref().and_then(|c| c.ttl),
        );
        let attempt = async move { engine.call_text_once(&target, &request).await };
        settled(reservation, attempt, move |r: &TextResponse| {
            cost_usd(price, r.input_tokens, r.output_tokens)
                + price.map_or(0.0, |(input, _)| {
                    cached_tokens_usd(
                        &model_id,
                        input,
                        ttl,
                        r.call.cache_read_tokens,
                        r.call.cache_write_tokens,
                    )
                })
        })
        .await
    }

    /// Embeds texts, one vector per input in input order (`None` for `None` inputs):
    /// [`Engine::embed_with`] without a budget, the vectors alone.
    ///
    /// # Errors
    /// When the model is not a supported embedding model.
    pub async fn embed(
        self: &Arc<Self>,
        model_id: &str,
        texts: &[Option<String>],
        options: &EmbedOptions,
    ) -> Result<RowResults<Vec<f32>>> {
        let rows = self
            .embed_with(model_id, texts, options, &CallOptions::default())
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| row.map(|r| r.map(|e| Vec::clone(&e.vector))))
            .collect())
    }

    /// Embeds texts under a query's [`CallOptions`], one [`EmbedResponse`] per input in input
    /// order (`None` for `None` inputs). Identical texts are embedded once, cached vectors cost
    /// nothing, and families that take several texts a call (Cohere: 96) get them batched.
    ///
    /// Each call (a chunk of up to the family's texts per call) is admitted by the query's
    /// budget as a text request is, its estimate the chunk's input tokens at the model's input
    /// price; a refused call fails each of its rows with
    /// [`BUDGET_EXCEEDED`](crate::bedrock::budget::BUDGET_EXCEEDED). A call's input tokens are
    /// divided among its rows (the remainder to the first), so the rows' tokens add up to what
    /// the service counted; a row served from the cache or repeating an earlier row of the
    /// batch has 0 and says so in its [`EmbedResponse::call`].
    ///
    /// # Errors
    /// When the model is not a supported embedding model.
    #[allow(clippy::too_many_lines)] // one pass over the batch: cache, chunks, budget, spread
    pub async fn embed_with(
        self: &Arc<Self>,
        model_id: &str,
        texts: &[Option<String>],
        options: &EmbedOptions,
        call: &CallOptions,
    ) -> Result<RowResults<EmbedResponse>> {
        let family = ModelFamily::from_model_id(model_id)
            .filter(|f| f.is_embedding())
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "Model '{model_id}' is not a supported embedding model: use amazon.titan-embed-text-v2:0 or cohere.embed-english-v3"
                ))
            })?;
        let counters = self.usage.model(model_id);
        let limiter = self.limiter(model_id);
        let scope = self.cache_scope().await;
        let groups = group_by_key(texts.iter().map(|t| {
            t.as_ref()
                .map(|text| cache_key(&scope, "embed", model_id, &EmbedInput { options, text }))
        }));
        counters.deduplicated(groups.duplicates);
        let mut answers: Vec<Shared<EmbedResponse>> = vec![None; groups.distinct.len()];
        let mut missing = Vec::new();
        for (slot, (key, _)) in groups.distinct.iter().enumerate() {
            match self.embed_cache.get(key) {
                Some(vector) => {
                    counters.cache_hit();
                    answers[slot] = Some(Ok(Arc::new(EmbedResponse {
                        vector,
                        input_tokens: 0,
                        call: CallInfo {
                            cache_hit: true,
                            ..CallInfo::default()
                        },
                    })));
                }
                None => missing.push(slot),
            }
        }
        let per_call = family.max_texts_per_call().max(1);
        // As in `generate_with`: each call's future is made when the window has room.
        let (limiter, counters, groups_ref) = (&limiter, &counters, &groups);
        let chunks = missing.len().div_ceil(per_call);
        let missing_ref = &missing;
        let mut stream = futures::stream::iter(0..chunks)
            .map(|chunk| {
                let slots =
                    &missing_ref[chunk * per_call..missing_ref.len().min((chunk + 1) * per_call)];
                let batch: Vec<&str> = slots
                    .iter()
                    .filter_map(|s| texts[groups_ref.distinct[*s].1].as_deref())
                    .collect();
                self.embed_chunk(
                    slots, batch, model_id, family, options, limiter, counters, call,
                )
                .boxed()
            })
            .buffer_unordered(limiter.ceiling());
        while let Some((slots, result)) = stream.next().await {
            match result {
                Ok((batch, tokens, attempts)) if batch.len() == slots.len() => {
                    let info = CallInfo {
                        cache_hit: false,
                        deduplicated: false,
                        retries: attempts.retries,
                        throttles: attempts.throttles,
                        latency_ms: attempts.latency_ms,
                        ..CallInfo::default()
                    };
                    let shares = token_shares(tokens, slots.len());
                    for ((slot, vector), input_tokens) in slots.iter().zip(batch).zip(shares) {
                        let vector = Arc::new(vector);
                        self.embed_cache
                            .insert(groups.distinct[*slot].0, Arc::clone(&vector));
                        answers[*slot] = Some(Ok(Arc::new(EmbedResponse {
                            vector,
                            input_tokens,
                            call: info.clone(),
                        })));
                    }
                }
                Ok((batch, _, _)) => {
                    let failure = Arc::new(CallFailure::fatal(
                        "ResponseError",
                        format!(
                            "{} vectors came back for {} texts",
                            batch.len(),
                            slots.len()
                        ),
                    ));
                    for slot in slots {
                        answers[*slot] = Some(Err(Arc::clone(&failure)));
                    }
                }
                Err(failure) => {
                    let failure = Arc::new(failure);
                    for slot in slots {
                        answers[*slot] = Some(Err(Arc::clone(&failure)));
                    }
                }
            }
        }
        let mut rows = spread(&groups.slots, &answers);
        // A row repeating an earlier row of the batch was embedded by that row's call.
        for (row, slot) in groups.slots.iter().enumerate() {
            if let (Some(slot), Some(Ok(answer))) = (slot, rows[row].as_mut())
                && groups.distinct[*slot].1 != row
            {
                answer.input_tokens = 0;
                answer.call = CallInfo {
                    deduplicated: true,
                    ..CallInfo::default()
                };
            }
        }
        Ok(rows)
    }

    #[allow(clippy::too_many_arguments)]
    async fn embed_chunk<'s>(
        self: &Arc<Self>,
        slots: &'s [usize],
        batch: Vec<&str>,
        model_id: &str,
        family: ModelFamily,
        options: &EmbedOptions,
        limiter: &Arc<Limiter>,
        counters: &ModelCounters,
        call: &CallOptions,
    ) -> (&'s [usize], std::result::Result<Embedded, CallFailure>) {
        let result = self
            .call_embed(model_id, family, &batch, options, limiter, counters, call)
            .await;
        (slots, result)
    }

    /// One embedding call with its retries, admitted by the query's budget when it has one.
    #[allow(clippy::too_many_arguments)]
    async fn call_embed(
        self: &Arc<Self>,
        model_id: &str,
        family: ModelFamily,
        texts: &[&str],
        options: &EmbedOptions,
        limiter: &Arc<Limiter>,
        counters: &ModelCounters,
        call: &CallOptions,
    ) -> std::result::Result<Embedded, CallFailure> {
        let body: Arc<str> = families::encode_embed_request(family, texts, options)
            .map_err(|e| CallFailure::fatal("InvalidRequest", e.to_string()))?
            .to_string()
            .into();
        let reserve = texts
            .iter()
            .map(|t| (t.chars().count() as u64).div_ceil(4))
            .sum::<u64>()
            .max(1);
        let price = self.usage.price(model_id);
        let budget = call.budget.as_ref().map(|budget| BudgetGuard {
            budget,
            estimate_usd: cost_usd(price, reserve, 0),
        });
        let body = &body;
        let ((vectors, tokens), attempts) = self
            .retry
            .run(
                model_id,
                limiter,
                counters,
                reserve,
                budget.as_ref(),
                |reservation| async move {
                    let (vectors, tokens) = match reservation {
                        None => self.embed_once(model_id, family, body).await?,
                        Some(reservation) => {
                            let (engine, model_id, body) =
                                (Arc::clone(self), model_id.to_string(), Arc::clone(body));
                            let attempt =
                                async move { engine.embed_once(&model_id, family, &body).await };
                            settled(reservation, attempt, move |(_, tokens)| {
                                cost_usd(price, *tokens, 0)
                            })
                            .await?
                        }
                    };
                    Ok(((vectors, tokens), tokens, 0))
                },
            )
            .await
            .map_err(|f| self.explained(f))?;
        Ok((vectors, tokens, attempts))
    }
}

/// What one embedding call returned: the vectors, the input tokens the service counted, and
/// how its attempts went.
type Embedded = (Vec<Vec<f32>>, u64, Attempts);

/// Runs one attempt admitted by a query's budget as a task of its own, which settles the
/// reservation with the attempt's cost (`usd` prices its answer) when it
/// ends: dropping the query (after an error elsewhere, say) neither cuts a request the budget
/// counted as sent nor loses its answer's cost, so the budget's counts are what Bedrock saw.
async fn settled<T, Fut, Usd>(
    reservation: Reservation,
    attempt: Fut,
    usd: Usd,
) -> std::result::Result<T, CallFailure>
where
    T: Send + 'static,
    Fut: std::future::Future<Output = std::result::Result<T, CallFailure>> + Send + 'static,
    Usd: Fn(&T) -> f64 + Send + 'static,
{
    let task = tokio::spawn(async move {
        let outcome = attempt.await;
        let actual = outcome.as_ref().ok().map(&usd);
        reservation.settle(actual);
        outcome
    });
    task.await.unwrap_or_else(|e| {
        Err(CallFailure::fatal(
            "InternalError",
            format!("the request's task ended without an answer: {e}"),
        ))
    })
}

/// A cached answer as served: no request was sent for it.
fn served_from_cache(answer: &TextResponse) -> TextResponse {
    TextResponse {
        call: CallInfo {
            cache_hit: true,
            ..CallInfo::default()
        },
        ..answer.clone()
    }
}

/// The outcome of one distinct input, shared by every row that repeats it.
type Shared<T> = Option<std::result::Result<Arc<T>, Arc<CallFailure>>>;

/// One result per row from the results of the distinct inputs.
fn spread<T: Clone>(slots: &[Option<usize>], shared: &[Shared<T>]) -> RowResults<T> {
    slots
        .iter()
        .map(|slot| {
            slot.and_then(|s| shared[s].as_ref()).map(|r| match r {
                Ok(v) => Ok(T::clone(v)),
                Err(e) => Err(CallFailure::clone(e)),
            })
        })
        .collect()
}

/// Inputs grouped by key: the distinct keys with the index of their first input, each input's
/// slot among the distinct keys, and how many inputs repeated an earlier one.
struct Groups {
    distinct: Vec<(CacheKey, usize)>,
    slots: Vec<Option<usize>>,
    duplicates: u64,
}

fn group_by_key(keys: impl ExactSizeIterator<Item = Option<CacheKey>>) -> Groups {
    let rows = keys.len();
    let mut index: KeyMap<usize> =
        KeyMap::with_capacity_and_hasher(rows, std::hash::BuildHasherDefault::default());
    let mut groups = Groups {
        distinct: Vec::with_capacity(rows),
        slots: Vec::with_capacity(rows),
        duplicates: 0,
    };
    for (i, key) in keys.enumerate() {
        let slot = key.map(|key| {
            *index.entry(key).or_insert_with(|| {
                groups.distinct.push((key, i));
                groups.distinct.len() - 1
            })
        });
        groups.slots.push(slot);
    }
    let non_null = groups.slots.iter().flatten().count();
    groups.duplicates = (non_null - groups.distinct.len()) as u64;
    groups
}

/// Compile-time check: batches can run on any tokio worker (DataFusion's async UDFs need it).
#[allow(dead_code)]
fn batch_futures_are_send(
    engine: Arc<Engine>,
    target: ModelTarget,
    requests: Vec<Option<TextRequest>>,
) {
    fn send<T: Send>(_: T) {}
    let texts: Vec<Option<String>> = Vec::new();
    send(async move {
        engine.generate(&target, &requests).await;
        let options = EmbedOptions::default();
        let _ = engine.embed("m", &texts, &options).await;
        engine
            .embed_with("m", &texts, &options, &CallOptions::default())
            .await
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bedrock::request::InferenceParams;

    #[test]
    fn grouping_keeps_order_and_counts_duplicates() {
        let scope = crate::bedrock::cache::CacheScope::new("AWS", "us-east-1", &[0; 32]);
        let k = |b: u8| {
            let request = TextRequest::prompt(b.to_string(), InferenceParams::default());
            Some(cache_key(&scope, "converse", "m", &request))
        };
        let g = group_by_key([k(1), None, k(2), k(1), k(1), None, k(3)].into_iter());
        assert_eq!(
            g.distinct
                .iter()
                .map(|(_, first)| *first)
                .collect::<Vec<_>>(),
            vec![0, 2, 6]
        );
        assert_eq!(
            g.slots,
            vec![Some(0), None, Some(1), Some(0), Some(0), None, Some(2)]
        );
        assert_eq!(g.duplicates, 2);
    }

    #[cfg(feature = "emulator")]
    mod against_the_emulator {
        use super::*;
        use crate::bedrock::budget::{BUDGET_EXCEEDED, Budget, Spent};
        use crate::bedrock::config::EngineConfig;
        use crate::bedrock::retry::FailureKind;
        use crate::emulator::{Emulator, EmulatorConfig, count_text_tokens, embedding_for};

        const COHERE: &str = "cohere.embed-english-v3";
        const TITAN: &str = "amazon.titan-embed-text-v2:0";

        async fn engine(emulator: &Emulator, max_concurrency: usize) -> Arc<Engine> {
            let config = EngineConfig {
                region: Some("us-east-1".into()),
                endpoint_url: Some(emulator.url().into()),
                max_concurrency,
                ..EngineConfig::default()
            };
            Engine::connect("embed_test", config)
                .await
                .expect("the engine connects to the emulator")
        }

        /// The rows with each latency set to 0 (it is measured, not predictable).
        fn without_latency(rows: RowResults<EmbedResponse>) -> RowResults<EmbedResponse> {
            rows.into_iter()
                .map(|row| {
                    row.map(|r| {
                        r.map(|mut e| {
                            e.call.latency_ms = 0;
                            e
                        })
                    })
                })
                .collect()
        }

        fn tokens(text: &str) -> u64 {
            u64::from(count_text_tokens(text).max(1))
        }

        #[tokio::test]
        async fn embed_with_tells_each_row_how_its_vector_came_and_shares_tokens_exactly() {
            let emulator = Emulator::start(EmulatorConfig::default())
                .await
                .expect("the emulator starts");
            let engine = engine(&emulator, 32).await;
            // 97 distinct texts of different lengths (two calls: 96 + 1), a NULL, a repeat.
            let distinct: Vec<String> = (0..97)
                .map(|i| format!("passage {i}{}", " more".repeat(i % 5)))
                .collect();
            let mut texts: Vec<Option<String>> = distinct.iter().cloned().map(Some).collect();
            texts.insert(3, None);
            texts.push(Some(distinct[1].clone()));
            let options = EmbedOptions::default();
            let rows = engine
                .embed_with(COHERE, &texts, &options, &CallOptions::default())
                .await
                .expect("an embedding model");

            let first_call: u64 = distinct[..96].iter().map(|t| tokens(t)).sum();
            let (share, remainder) = (first_call / 96, first_call % 96);
            let sent = |i: usize| EmbedResponse {
                vector: Arc::new(embedding_for(COHERE, &distinct[i], 1024, true)),
                input_tokens: match i {
                    0 => share + remainder,
                    96 => tokens(&distinct[96]),
                    _ => share,
                },
                call: CallInfo::default(),
            };
            let mut expected: RowResults<EmbedResponse> =
                (0..97).map(|i| Some(Ok(sent(i)))).collect();
            expected.insert(3, None);
            expected.push(Some(Ok(EmbedResponse {
                input_tokens: 0,
                call: CallInfo {
                    deduplicated: true,
                    ..CallInfo::default()
                },
                ..sent(1)
            })));
            assert_eq!(without_latency(rows.clone()), expected);
            assert_ne!(
                remainder, 0,
                "the texts' lengths leave a remainder to place"
            );

            let row_tokens: u64 = rows
                .iter()
                .flatten()
                .flatten()
                .map(|e| e.input_tokens)
                .sum();
            let stats = emulator.stats().snapshot();
            assert_eq!(
                (
                    row_tokens,
                    stats.count(Some(COHERE), Some("InvokeModel"), None)
                ),
                (stats.input_tokens, 2)
            );
            let usage = engine.usage();
            assert_eq!(
                usage
                    .iter()
                    .map(|u| (u.model.as_str(), u.requests, u.input_tokens, u.deduplicated))
                    .collect::<Vec<_>>(),
                vec![(COHERE, 2, row_tokens, 1)]
            );

            // Again: every distinct text from the cache, at no cost.
            let again = engine
                .embed_with(COHERE, &texts, &options, &CallOptions::default())
                .await
                .expect("an embedding model");
            let cached = |i: usize, call: CallInfo| EmbedResponse {
                input_tokens: 0,
                call,
                ..sent(i)
            };
            let hit = CallInfo {
                cache_hit: true,
                ..CallInfo::default()
            };
            let mut expected: RowResults<EmbedResponse> =
                (0..97).map(|i| Some(Ok(cached(i, hit.clone())))).collect();
            expected.insert(3, None);
            expected.push(Some(Ok(cached(
                1,
                CallInfo {
                    deduplicated: true,
                    ..CallInfo::default()
                },
            ))));
            assert_eq!(again, expected);
            assert_eq!(
                emulator
                    .stats()
                    .snapshot()
                    .count(Some(COHERE), Some("InvokeModel"), None),
                2
            );
            emulator.shutdown().await;
        }

        #[tokio::test]
        async fn a_budget_admits_each_embedding_call_and_its_refusal_fails_the_call_s_rows() {
            let emulator = Emulator::start(EmulatorConfig::default())
                .await
                .expect("the emulator starts");
            // One call at a time: the calls are admitted in row order.
            let engine = engine(&emulator, 1).await;
            let texts: Vec<Option<String>> = vec![
                Some("red apple".into()),
                Some("green pear".into()),
                Some("red apple".into()),
                None,
                Some("blue sky".into()),
            ];
            let budget = Arc::new(Budget::new(Some(1), None));
            let call = CallOptions {
                budget: Some(Arc::clone(&budget)),
                ..CallOptions::default()
            };
            let rows = engine
                .embed_with(TITAN, &texts, &EmbedOptions::default(), &call)
                .await
                .expect("an embedding model");

            let apple = || Arc::new(embedding_for(TITAN, "red apple", 1024, true));
            let cost = engine.cost_usd(TITAN, 3, 0).expect("a listed price");
            let refusal = CallFailure {
                kind: FailureKind::Fatal,
                code: BUDGET_EXCEEDED.into(),
                message: "the query stopped before a request that would pass bedrock.max_requests = 1; it had sent 1 request(s) costing about $0.000000, received 1 answer(s) and returned 0 row(s). Raise the limit (SET bedrock.max_requests / bedrock.max_cost_usd) or query fewer rows".into(),
            };
            let expected: RowResults<EmbedResponse> = vec![
                Some(Ok(EmbedResponse {
                    vector: apple(),
                    input_tokens: 3,
                    call: CallInfo::default(),
                })),
                Some(Err(refusal.clone())),
                Some(Ok(EmbedResponse {
                    vector: apple(),
                    input_tokens: 0,
                    call: CallInfo {
                        deduplicated: true,
                        ..CallInfo::default()
                    },
                })),
                None,
                Some(Err(refusal)),
            ];
            assert_eq!(without_latency(rows), expected);
            assert_eq!(
                budget.spent(),
                Spent {
                    requests: 1,
                    cost_usd: cost,
                    reserved_usd: 0.0,
                    answered: 1,
                    rows_answered: 0,
                }
            );
            assert_eq!(
                emulator
                    .stats()
                    .snapshot()
                    .count(Some(TITAN), Some("InvokeModel"), None),
                1
            );
            emulator.shutdown().await;
        }
    }
}
