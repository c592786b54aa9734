//! A job's life, in its own task: `Submitted`, `Validating`, `Scheduled`, `InProgress`, then
//! `Completed`, `PartiallyCompleted` or `Failed` (or `Stopping`, `Stopped`), one step each.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::input::{self, InputFile, Record};
use super::output::{self, FileAnswers};
use super::{Interrupt, Invocation, Job, Settings, Status};
use crate::emulator::directive;
use crate::emulator::server::{self, Answered, Operation};
use crate::emulator::stats::EmulatorStats;
use crate::emulator::wire::ApiError;

/// The record error for a Converse record with tools.
const NO_TOOLS: &str = "Tools are not supported in batch inference";
/// The message of a stopped job.
const STOPPED: &str = "The job was stopped at the user's request.";

/// What the records' answers came to.
#[derive(Debug, Default)]
struct Answers {
    files: Vec<FileAnswers>,
    processed: u64,
    errors: u64,
    input_tokens: u64,
    output_tokens: u64,
}

/// How the walk ended.
enum Ended {
    /// In a terminal status.
    Done,
    /// Forgotten by a reset or a shutdown.
    Cancelled,
    /// `Stopping`, with the answers so far when it was `InProgress`.
    Stopping(Option<(Answers, u64)>),
}

/// Runs the job to its end.
pub(super) async fn run(job: Arc<Job>, stats: Arc<EmulatorStats>, settings: Settings) {
    match walk(&job, &stats, &settings).await {
        Ended::Done | Ended::Cancelled => {}
        Ended::Stopping(answers) => {
            // `Stopping` lasts one step; only a cancellation cuts it short.
            let end = Instant::now() + settings.step;
            if wait_until(&job, end, false).await.is_err() {
                return;
            }
            if let (Some((answers, total)), Some(root)) = (answers, &settings.root)
                && let Err(message) = write(&job, root, &answers, total).await
            {
                let _ = job.advance(&stats, Status::Failed, Some(message));
                return;
            }
            let _ = job.advance(&stats, Status::Stopped, Some(STOPPED.to_string()));
        }
    }
}

/// Waits until `deadline`, or until the job is cancelled, or (with `stops`) being stopped.
async fn wait_until(job: &Job, deadline: Instant, stops: bool) -> Result<(), Interrupt> {
    loop {
        match job.interrupted() {
            Some(Interrupt::Cancel) => return Err(Interrupt::Cancel),
            Some(Interrupt::Stop) if stops => return Err(Interrupt::Stop),
            _ => {}
        }
        if Instant::now() >= deadline {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {}
            () = job.wake.notified() => {}
        }
    }
}

/// One status step.
async fn step(job: &Job, settings: &Settings) -> Result<(), Interrupt> {
    wait_until(job, Instant::now() + settings.step, true).await
}

fn ended(interrupt: Interrupt) -> Ended {
    match interrupt {
        Interrupt::Cancel => Ended::Cancelled,
        Interrupt::Stop => Ended::Stopping(None),
    }
}

/// Walks the statuses until the job ends or is interrupted.
async fn walk(job: &Job, stats: &EmulatorStats, settings: &Settings) -> Ended {
    let Some(root) = settings.root.clone() else {
        // `CreateModelInvocationJob` refuses jobs without an S3 root.
        return Ended::Cancelled;
    };
    macro_rules! check {
        ($e:expr) => {
            if let Err(interrupt) = $e {
                return ended(interrupt);
            }
        };
    }
    check!(step(job, settings).await);
    check!(job.advance(stats, Status::Validating, None));
    let (input, output) = (job.request.input.clone(), job.request.output.clone());
    let read_root = root.clone();
    let read = tokio::task::spawn_blocking(move || input::read(&read_root, &input, &output))
        .await
        .unwrap_or_else(|e| Err(format!("The input could not be read: {e}.")));
    check!(step(job, settings).await);
    let files = match read {
        Ok(files) => files,
        Err(message) => {
            check!(job.advance(stats, Status::Failed, Some(message)));
            return Ended::Done;
        }
    };
    let total = files.iter().map(|f| f.records.len() as u64).sum::<u64>();
    job.validated(stats, total, files.iter().map(|f| f.uri.clone()).collect());
    check!(job.advance(stats, Status::Scheduled, None));
    check!(step(job, settings).await);
    check!(job.advance(stats, Status::InProgress, None));

    let started = Instant::now();
    let (answers, interrupted) = answer_all(job, stats, settings, &files).await;
    let interrupted = match interrupted {
        None => wait_until(job, started + settings.step, true).await.err(),
        some => some,
    };
    match interrupted {
        Some(Interrupt::Cancel) => Ended::Cancelled,
        Some(Interrupt::Stop) => Ended::Stopping(Some((answers, total))),
        None => {
            if let Err(message) = write(job, &root, &answers, total).await {
                check!(job.advance(stats, Status::Failed, Some(message)));
                return Ended::Done;
            }
            let last = if answers.errors > 0 {
                Status::PartiallyCompleted
            } else {
                Status::Completed
            };
            match job.advance(stats, last, None) {
                Ok(()) => Ended::Done,
                Err(interrupt) => ended(interrupt),
            }
        }
    }
}

/// Answers the records in order, paced by `records_per_second`, until done or interrupted.
async fn answer_all(
    job: &Job,
    stats: &EmulatorStats,
    settings: &Settings,
    files: &[InputFile],
) -> (Answers, Option<Interrupt>) {
    let mut answers = Answers::default();
    // When the next record is due, at the pace of the moment.
    let mut due = Instant::now();
    for file in files {
        answers.files.push(FileAnswers {
            name: file.name.clone(),
            lines: Vec::with_capacity(file.records.len()),
        });
        for record in &file.records {
            let n = answers.processed;
            let interrupted = if let Some(rate) = settings.records_per_second() {
                if n > 0 {
                    due += Duration::from_secs(1) / rate;
                }
                wait_until(job, due, true).await.err()
            } else {
                due = Instant::now();
                if n % 64 == 0 {
                    tokio::task::yield_now().await;
                    job.interrupted()
                } else {
                    None
                }
            };
            if let Some(interrupt) = interrupted {
                return (answers, Some(interrupt));
            }
            let line = match answer(job, stats, record) {
                Ok(answered) => {
                    stats.tokens(answered.input_tokens, answered.output_tokens);
                    answers.input_tokens += u64::from(answered.input_tokens);
                    answers.output_tokens += u64::from(answered.output_tokens);
                    json!({ "recordId": record.id, "modelInput": record.input, "modelOutput": answered.body })
                }
                Err(e) => {
                    answers.errors += 1;
                    json!({
                        "recordId": record.id,
                        "modelInput": record.input,
                        "error": { "errorCode": e.code.status(), "errorMessage": e.message },
                    })
                }
            };
            if let Some(current) = answers.files.last_mut() {
                current.lines.push(line.to_string());
            }
            answers.processed += 1;
            job.processed(stats, answers.processed, answers.errors);
        }
    }
    (answers, None)
}

/// Answers one record as the runtime route would answer its `modelInput`, or its record
/// error: a Converse record with tools, an invalid body, or an error directive in the prompt.
fn answer(job: &Job, stats: &EmulatorStats, record: &Record) -> Result<Answered, ApiError> {
    let mut body = record.input.clone();
    let op = match job.request.invocation {
        Invocation::Converse => {
            if body.get("toolConfig").is_some() {
                return Err(ApiError::validation(NO_TOOLS));
            }
            if let Some(object) = body.as_object_mut() {
                object.remove("modelId");
            }
            Operation::Converse
        }
        Invocation::InvokeModel => Operation::InvokeModel,
    };
    let answered = server::answer_request(op, job.request.model, job.request.via_profile, &body)?;
    if let Some(d) = directive::find(&body.to_string()) {
        stats.fault(&format!("directive:{}", d.code.name()));
        return Err(ApiError::new(d.code, d.code.default_message()));
    }
    Ok(answered)
}

/// Writes the output files and the manifest, or the message the job fails with.
async fn write(
    job: &Job,
    root: &std::path::Path,
    answers: &Answers,
    total: u64,
) -> Result<(), String> {
    let manifest: Value = json!({
        "totalRecordCount": total,
        "processedRecordCount": answers.processed,
        "successRecordCount": answers.processed - answers.errors,
        "errorRecordCount": answers.errors,
        "inputTokenCount": answers.input_tokens,
        "outputTokenCount": answers.output_tokens,
    });
    let (root, output, id, files) = (
        root.to_path_buf(),
        job.request.output.clone(),
        job.id.clone(),
        answers.files.clone(),
    );
    let uri = format!("{}{}/", job.request.output.folder_uri(), job.id);
    tokio::task::spawn_blocking(move || output::write(&root, &output, &id, &files, &manifest))
        .await
        .map_err(std::io::Error::other)
        .and_then(|written| written)
        .map_err(|e| format!("The output could not be written to {uri}: {e}."))
}
