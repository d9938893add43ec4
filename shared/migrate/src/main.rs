//! `mediaq-migrate`: applies mediaq's schema to the database at `DATABASE_URL` (a development
//! tool for scripts/sqlx-prepare.sh; deployments run `mediaq-api migrate`).

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("mediaq-migrate: DATABASE_URL is not set");
        return std::process::ExitCode::FAILURE;
    };
    let result = async {
        let pool = sqlx::PgPool::connect(&url).await.map_err(|e| e.to_string())?;
        mediaq_migrate::migrate(&pool).await.map_err(|e| e.to_string())
    };
    match result.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mediaq-migrate: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
