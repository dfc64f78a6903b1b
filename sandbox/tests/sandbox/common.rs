use keel_sandbox::{Limits, Sandbox, SandboxConfig};

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A test's hold on the engine: its turn, and a sandbox of its own (its own session label, so
/// other processes' sandbox containers, running meanwhile, are not counted).
pub struct Harness {
    pub sandbox: Sandbox,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

pub async fn harness(limits: Limits) -> Harness {
    harness_with(SandboxConfig::with_limits(limits)).await
}

pub async fn harness_with(config: SandboxConfig) -> Harness {
    let turn = TURN.lock().await;
    let sandbox = match Sandbox::connect(config).await {
        Ok(s) => s,
        Err(e) => panic!("these tests need a container engine: {e}"),
    };
    assert!(
        sandbox
            .own_containers()
            .await
            .expect("listing containers")
            .is_empty()
    );
    Harness {
        sandbox,
        _turn: turn,
    }
}

impl Harness {
    /// No container of this test's sandbox is left.
    pub async fn assert_no_leftovers(&self) {
        let left = self
            .sandbox
            .own_containers()
            .await
            .expect("listing containers");
        assert!(left.is_empty(), "containers left behind: {left:?}");
    }

    /// The container `id` is gone (whichever sandbox made it).
    pub async fn assert_gone(&self, id: &str) {
        let now = self
            .sandbox
            .labelled_containers()
            .await
            .expect("listing containers");
        assert!(
            !now.iter().any(|c| c == id),
            "container {id} is still there"
        );
    }
}

pub fn small_limits() -> Limits {
    Limits {
        memory: 256 << 20,
        pids: 64,
        exec_timeout: std::time::Duration::from_secs(60),
        max_output: 256 << 10,
        work_size: 32 << 20,
        tmp_size: 8 << 20,
        lifetime: std::time::Duration::from_secs(600),
        ..Limits::default()
    }
}
