//! A batch of rows fanned out to requests and back: inputs grouped by cache key (a repeat of an
//! earlier row costs nothing), cached answers served, the rest sent through a window of the
//! limiter's concurrency (each distinct request with its retries and budget), and every
//! distinct answer spread back to the rows that asked for it.

use std::collections::HashMap;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};

use super::{CallOptions, DEFAULT_TOKEN_RESERVATION, Engine, ModelTarget, RowResults, cost_usd};
use crate::bedrock::budget::Reservation;
use crate::bedrock::cache::{CacheKey, Source, cache_key};
use crate::bedrock::families::{self, EmbedOptions, ModelFamily};
use crate::bedrock::limiter::Limiter;
use crate::bedrock::request::{CallInfo, TextRequest, TextResponse};
use crate::bedrock::retry::{BudgetGuard, CallFailure};
use crate::bedrock::usage::ModelCounters;
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
        let slots: Vec<usize> = (0..groups.distinct.len())
            .filter(|slot| requests[groups.distinct[*slot].1].is_some())
            .collect();
        let mut answers: Vec<Shared<TextResponse>> = vec![None; groups.distinct.len()];
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
            let mut served = TextResponse::clone(answer);
            served.call = CallInfo {
                cache_hit: true,
                ..CallInfo::default()
            };
            return (slot, Ok(Arc::new(served)));
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
            .await?;
        response.call = CallInfo {
            cache_hit: false,
            deduplicated: false,
            retries: attempts.retries,
            throttles: attempts.throttles,
            latency_ms: attempts.latency_ms,
        };
        Ok(response)
    }

    /// One attempt admitted by a query's budget. It runs as a task of its own, which settles
    /// the reservation when the attempt ends: dropping the query (after an error elsewhere,
    /// say) neither cuts a request the budget counted as sent nor loses its answer's cost, so
    /// the budget's counts are what Bedrock saw.
    async fn call_text_admitted(
        self: &Arc<Self>,
        target: &ModelTarget,
        request: &TextRequest,
        reservation: Reservation,
        price: Option<(f64, f64)>,
    ) -> std::result::Result<TextResponse, CallFailure> {
        let (engine, target, request) = (Arc::clone(self), target.clone(), request.clone());
        let attempt = tokio::spawn(async move {
            let outcome = engine.call_text_once(&target, &request).await;
            let actual = outcome
                .as_ref()
                .ok()
                .map(|r| cost_usd(price, r.input_tokens, r.output_tokens));
            reservation.settle(actual);
            outcome
        });
        attempt.await.unwrap_or_else(|e| {
            Err(CallFailure::fatal(
                "InternalError",
                format!("the request's task ended without an answer: {e}"),
            ))
        })
    }

    /// Embeds texts, one vector per input in input order (`None` for `None` inputs). Identical
    /// texts are embedded once, cached vectors cost nothing, and families that take several
    /// texts a call (Cohere: 96) get them batched.
    pub async fn embed(
        self: &Arc<Self>,
        model_id: &str,
        texts: &[Option<String>],
        options: &EmbedOptions,
    ) -> Result<RowResults<Vec<f32>>> {
        let family = ModelFamily::from_model_id(model_id)
            .filter(|f| f.is_embedding())
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "Model '{model_id}' is not a supported embedding model: use amazon.titan-embed-text-v2:0 or cohere.embed-english-v3"
                ))
            })?;
        let counters = self.usage.model(model_id);
        let limiter = self.limiter(model_id);
        let option_key = (
            options.dimensions,
            options.normalize,
            options.input_type.clone(),
        );
        let scope = self.cache_scope().await;
        let groups = group_by_key(texts.iter().map(|t| {
            t.as_ref()
                .map(|t| cache_key(&scope, "embed", model_id, &(&option_key, t)))
        }));
        counters.deduplicated(groups.duplicates);
        let mut vectors: Vec<Shared<Vec<f32>>> = vec![None; groups.distinct.len()];
        let mut missing = Vec::new();
        for (slot, (key, _)) in groups.distinct.iter().enumerate() {
            match self.embed_cache.get(key).await {
                Some(v) => {
                    counters.cache_hit();
                    vectors[slot] = Some(Ok(v));
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
                self.embed_chunk(slots, batch, model_id, family, options, limiter, counters)
                    .boxed()
            })
            .buffer_unordered(limiter.ceiling());
        while let Some((slots, result)) = stream.next().await {
            match result {
                Ok(batch) if batch.len() == slots.len() => {
                    for (slot, vector) in slots.iter().zip(batch) {
                        let vector = Arc::new(vector);
                        self.embed_cache
                            .insert(groups.distinct[*slot].0, Arc::clone(&vector))
                            .await;
                        vectors[*slot] = Some(Ok(vector));
                    }
                }
                Ok(batch) => {
                    let failure = Arc::new(CallFailure::fatal(
                        "ResponseError",
                        format!(
                            "{} vectors came back for {} texts",
                            batch.len(),
                            slots.len()
                        ),
                    ));
                    for slot in slots {
                        vectors[*slot] = Some(Err(Arc::clone(&failure)));
                    }
                }
                Err(failure) => {
                    let failure = Arc::new(failure);
                    for slot in slots {
                        vectors[*slot] = Some(Err(Arc::clone(&failure)));
                    }
                }
            }
        }
        Ok(spread(&groups.slots, &vectors))
    }

    #[allow(clippy::too_many_arguments)]
    async fn embed_chunk<'s>(
        &self,
        slots: &'s [usize],
        batch: Vec<&str>,
        model_id: &str,
        family: ModelFamily,
        options: &EmbedOptions,
        limiter: &Arc<Limiter>,
        counters: &ModelCounters,
    ) -> (&'s [usize], std::result::Result<Vec<Vec<f32>>, CallFailure>) {
        let result = self
            .call_embed(model_id, family, &batch, options, limiter, counters)
            .await;
        (slots, result)
    }

    async fn call_embed(
        &self,
        model_id: &str,
        family: ModelFamily,
        texts: &[&str],
        options: &EmbedOptions,
        limiter: &Arc<Limiter>,
        counters: &ModelCounters,
    ) -> std::result::Result<Vec<Vec<f32>>, CallFailure> {
        let body = families::encode_embed_request(family, texts, options)
            .map_err(|e| CallFailure::fatal("InvalidRequest", e.to_string()))?
            .to_string();
        let reserve = texts
            .iter()
            .map(|t| (t.chars().count() as u64).div_ceil(4))
            .sum::<u64>()
            .max(1);
        self.retry
            .run(model_id, limiter, counters, reserve, None, |_| async {
                let (vectors, tokens) = self.embed_once(model_id, family, &body).await?;
                Ok((vectors, tokens, 0))
            })
            .await
            .map(|(vectors, _)| vectors)
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

fn group_by_key(keys: impl Iterator<Item = Option<CacheKey>>) -> Groups {
    let mut index: HashMap<CacheKey, usize> = HashMap::new();
    let mut groups = Groups {
        distinct: Vec::new(),
        slots: Vec::new(),
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
        engine.embed("m", &texts, &EmbedOptions::default()).await
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_keeps_order_and_counts_duplicates() {
        let k = |b: u8| Some([b; 32]);
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
}
