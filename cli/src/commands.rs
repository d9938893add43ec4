//! The commands: what each one asks the server and prints.

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{json, Value};

use crate::{
    client::{Client, Failure},
    text::{clean, json_line},
    transfer::{self, Transport},
    ui::Ui,
    wait, Command,
};

pub async fn run(client: &Client, ui: &Ui, command: Command) -> Result<(), Failure> {
    match command {
        Command::Upload { files, wait, output, output_dir, retries, force } => {
            upload(client, ui, &files, wait, (output, output_dir, force), retries).await
        }
        Command::Status { id } => {
            let job = client.json(Method::GET, &format!("/v1/jobs/{}", wait::check_id(&id)?)).await?;
            print_job(ui, &job);
            Ok(())
        }
        Command::Wait { id } => {
            let bar = ui.bytes_bar(&id[..id.len().min(8)]);
            Ui::to_conversion(&bar);
            let job = wait::until_terminal(client, wait::check_id(&id)?, &bar).await;
            bar.finish_and_clear();
            let job = job?;
            print_job(ui, &job);
            wait::require_success(&job)
        }
        Command::Download { id, output, force } => {
            let id = wait::check_id(&id)?;
            let out = match output {
                Some(out) => out,
                None => default_name(client, id).await?,
            };
            transfer::refuse_overwrite(&out, force)?;
            let bar = ui.bytes_bar(&clean(&out.display().to_string()));
            let written = transfer::download(client, id, &out, force, &bar).await;
            bar.finish_and_clear();
            let written = written?;
            if ui.json {
                println!("{}", json_line(&json!({ "id": id, "path": out, "bytes": written })));
            } else {
                println!("{}", clean(&out.display().to_string()));
            }
            Ok(())
        }
        Command::Url { id, expires_in, poster } => crate::link::print(client, ui, &id, expires_in, poster).await,
        Command::Cancel { id } => {
            let job = client.json(Method::DELETE, &format!("/v1/jobs/{}", wait::check_id(&id)?)).await?;
            print_job(ui, &job);
            Ok(())
        }
        Command::Retry { id, wait } => {
            let id = wait::check_id(&id)?;
            let job = client.json(Method::POST, &format!("/v1/jobs/{id}/retry")).await?;
            if !wait {
                print_job(ui, &job);
                return Ok(());
            }
            let bar = ui.bytes_bar(&id[..id.len().min(8)]);
            Ui::to_conversion(&bar);
            let job = wait::until_terminal(client, id, &bar).await;
            bar.finish_and_clear();
            let job = job?;
            print_job(ui, &job);
            wait::require_success(&job)
        }
        Command::List { status, limit, cursor } => {
            let mut request = client.request(Method::GET, "/v1/jobs");
            for (name, value) in [("status", status), ("limit", limit.map(|l| l.to_string())), ("cursor", cursor)] {
                if let Some(v) = value {
                    request = request.query(&[(name, v)]);
                }
            }
            let page = client.read_json(client.send(request).await?).await?;
            if ui.json {
                println!("{}", json_line(&page));
            } else {
                for job in page["jobs"].as_array().into_iter().flatten() {
                    println!("{}", job_line(job));
                }
                if let Some(next) = page["next_cursor"].as_str() {
                    eprintln!("more: mediaq list --cursor {}", clean(next));
                }
            }
            Ok(())
        }
    }
}

/// `clip.webm` -> `clip.mp4`.
pub fn mp4_name(input: &Path) -> PathBuf {
    let stem = input.file_stem().map_or_else(|| "output".into(), |s| s.to_string_lossy().into_owned());
    PathBuf::from(format!("{stem}.mp4"))
}

/// Where each input's MP4 goes, if anywhere; an existing file is refused unless `force`.
fn destinations(files: &[PathBuf], output: Option<PathBuf>, output_dir: Option<PathBuf>, force: bool) -> Outs {
    let outs = destinations_of(files, output, output_dir)?;
    for out in outs.iter().flatten() {
        transfer::refuse_overwrite(out, force)?;
    }
    Ok(outs)
}

type Outs = Result<Vec<Option<PathBuf>>, Failure>;

fn destinations_of(files: &[PathBuf], output: Option<PathBuf>, output_dir: Option<PathBuf>) -> Outs {
    let dir = match (output, output_dir) {
        (Some(out), None) if files.len() == 1 && !out.is_dir() => return Ok(vec![Some(out)]),
        (Some(dir), None) | (None, Some(dir)) => dir,
        _ => return Ok(vec![None; files.len()]),
    };
    let outs: Vec<PathBuf> = files.iter().map(|f| dir.join(mp4_name(f))).collect();
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = outs.iter().find(|o| !seen.insert(*o)) {
        return Err(Failure::Local(format!("two inputs would both be written to {}", dup.display())));
    }
    Ok(outs.into_iter().map(Some).collect())
}

async fn upload(
    client: &Client,
    ui: &Ui,
    files: &[PathBuf],
    wait_flag: bool,
    (output, output_dir, force): (Option<PathBuf>, Option<PathBuf>, bool),
    retries: u32,
) -> Result<(), Failure> {
    let outs = destinations(files, output, output_dir, force)?;
    let wait_for_jobs = wait_flag || outs.iter().any(Option::is_some);
    if transfer::detect_transport(client).await == Transport::TusOffered {
        ui.note("note: the server offers resumable uploads; this mediaq version uploads in one request (retried whole, same Idempotency-Key)");
    }
    // Uploads one after the other (the link is the bottleneck), then every job is waited for at once.
    let mut uploaded = Vec::new();
    for (path, out) in files.iter().zip(outs) {
        let filename = path.file_name().map_or_else(|| "upload.webm".into(), |n| n.to_string_lossy().into_owned());
        let bar = ui.bytes_bar(&filename);
        let result = async {
            let key = transfer::idempotency_key(path, &filename).await?;
            transfer::upload(client, path, &filename, &key, retries, &bar).await
        }
        .await;
        match &result {
            Ok(job) => ui.note(&clean(&format!("{filename}: job {}", job["id"].as_str().unwrap_or("?")))),
            Err(e) => {
                bar.finish_and_clear();
                ui.note(&format!("{filename}: {e}"));
            }
        }
        uploaded.push((path.clone(), out, bar, result));
    }
    let finished = futures_util::future::join_all(uploaded.into_iter().map(|(path, out, bar, result)| async move {
        let outcome = match result {
            Ok(job) if wait_for_jobs => finish(client, ui, job, out.as_deref(), force, &bar).await,
            other => other.map(|job| (job, None)),
        };
        bar.finish_and_clear();
        (path, outcome)
    }))
    .await;
    let mut first_failure = None;
    let mut report = Vec::new();
    for (path, outcome) in finished {
        match outcome {
            Ok((job, written)) => {
                if !ui.json {
                    let written = written.as_ref().map_or(String::new(), |p| format!("\t{}", p.display()));
                    println!(
                        "{}\t{}\t{}{written}",
                        clean(job["id"].as_str().unwrap_or("?")),
                        clean(job["status"].as_str().unwrap_or("?")),
                        path.display()
                    );
                }
                report.push(json!({ "file": path, "job": job, "output": written }));
            }
            Err(failure) => {
                report.push(json!({ "file": path, "error": failure.to_json()["error"] }));
                first_failure.get_or_insert(failure);
            }
        }
    }
    if ui.json {
        println!("{}", json_line(&Value::Array(report)));
    }
    first_failure.map_or(Ok(()), Err)
}

/// Waits for a job, then downloads its MP4 when asked to.
async fn finish(
    client: &Client,
    ui: &Ui,
    job: Value,
    out: Option<&Path>,
    force: bool,
    bar: &indicatif::ProgressBar,
) -> Result<(Value, Option<PathBuf>), Failure> {
    let id = job["id"].as_str().unwrap_or_default().to_owned();
    Ui::to_conversion(bar);
    let job = wait::until_terminal(client, &id, bar).await?;
    if let Err(failure) = wait::require_success(&job) {
        ui.note(&format!("{}: {failure}", bar.prefix()));
        return Err(failure);
    }
    let Some(out) = out else { return Ok((job, None)) };
    let download_bar = ui.bytes_bar(&clean(&out.display().to_string()));
    let written = transfer::download(client, &id, out, force, &download_bar).await;
    download_bar.finish_and_clear();
    written?;
    Ok((job, Some(out.to_owned())))
}

/// The name in the server's `Content-Disposition` is not known before the request; the job's
/// input name gives the same one (`clip.webm` -> `clip.mp4`).
async fn default_name(client: &Client, id: &str) -> Result<PathBuf, Failure> {
    let job = client.json(Method::GET, &format!("/v1/jobs/{id}")).await?;
    let input = job["input"]["filename"].as_str().unwrap_or(id);
    // Only the last component: a name from the server never picks the directory, nor puts a
    // control character into a file name.
    let name = Path::new(input)
        .file_name()
        .map_or_else(|| PathBuf::from(id), |n| PathBuf::from(clean(&n.to_string_lossy()).replace('?', "_")));
    Ok(mp4_name(&name))
}

fn job_line(job: &Value) -> String {
    format!(
        "{}\t{}\t{:>3.0}%\t{}",
        clean(job["id"].as_str().unwrap_or("?")),
        clean(job["status"].as_str().unwrap_or("?")),
        job["progress"].as_f64().unwrap_or(0.0) * 100.0,
        clean(job["input"]["filename"].as_str().unwrap_or(""))
    )
}

fn print_job(ui: &Ui, job: &Value) {
    if ui.json {
        println!("{}", json_line(job));
        return;
    }
    println!("{}", job_line(job));
    if let (Some(code), Some(message)) = (job["error"]["code"].as_str(), job["error"]["message"].as_str()) {
        println!("error: {}: {}", clean(code), clean(message));
    }
    if let Some(line) = crate::line::describe(job, chrono::Utc::now()) {
        println!("queue: {}", clean(&line));
    }
    if let Some(link) = job["links"]["output"].as_str() {
        println!("output: {}", clean(link));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_named_after_inputs() {
        assert_eq!(mp4_name(Path::new("dir/clip.webm")), PathBuf::from("clip.mp4"));
        assert_eq!(mp4_name(Path::new("a.b.webm")), PathBuf::from("a.b.mp4"));
        let files = vec![PathBuf::from("x/a.webm"), PathBuf::from("y/b.webm")];
        let outs = destinations_of(&files, None, Some(PathBuf::from("out"))).unwrap();
        assert_eq!(outs, vec![Some(PathBuf::from("out/a.mp4")), Some(PathBuf::from("out/b.mp4"))]);
        let clash = vec![PathBuf::from("x/a.webm"), PathBuf::from("y/a.webm")];
        assert!(destinations_of(&clash, None, Some(PathBuf::from("out"))).is_err());
        let one = destinations_of(&files[..1], Some(PathBuf::from("/nonexistent/o.mp4")), None).unwrap();
        assert_eq!(one, vec![Some(PathBuf::from("/nonexistent/o.mp4"))]);
    }
}
