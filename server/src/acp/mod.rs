pub async fn serve_stdio(_c: crate::config::Config) -> bool { true }
