//! `mediaq url <id>`: a signed link that plays the job's MP4 (or shows its poster) without any
//! credential, for a browser, a `<video src>` or a player (`GET /v1/jobs/{id}/links`).

use reqwest::Method;
use serde_json::{json, Value};

use crate::{
    client::{Client, Failure},
    ui::Ui,
    wait,
};

pub async fn print(client: &Client, ui: &Ui, id: &str, expires_in: Option<u64>, poster: bool) -> Result<(), Failure> {
    let id = wait::check_id(id)?;
    let mut request = client.request(Method::GET, &format!("/v1/jobs/{id}/links"));
    if let Some(secs) = expires_in {
        request = request.query(&[("expires_in", secs)]);
    }
    let links: Value =
        client.send(request).await?.json().await.map_err(|e| crate::client::unreachable(&client.base, &e))?;
    let which = if poster { "poster" } else { "output" };
    let Some(path) = links[which].as_str() else {
        return Err(Failure::Local(format!("job {id} has no {which} to link to (audio only?)")));
    };
    let url = format!("{}{path}", client.base);
    if ui.json {
        println!("{}", json!({ "id": id, "url": url, "expires_at": links["expires_at"] }));
    } else {
        println!("{url}");
    }
    Ok(())
}
