//! The component registry: from AutoGen component JSON to running agents, teams, model
//! clients and termination conditions.
//!
//! A [`Registry`] maps `provider` strings (full Python paths and AutoGen's short aliases) to
//! typed builder functions, one table per component role. It is an ordinary value, not global
//! state: an application builds one with [`Registry::with_builtins`], adds its own builders
//! with `register_*`, and hands it to the engine. Building validates: a builder reports every
//! problem it finds as a [`FieldError`] whose path is relative to the component it was given,
//! and the caller prefixes the path of that component, so nested problems come back as
//! `config.participants[1].config.model_client.provider`.

use std::collections::HashMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::agent::Agent;
use crate::component::ComponentModel;
use crate::error::{FieldError, join_path};
use crate::model::{ModelClient, ProviderEnv};
use crate::team::{SingleAgentTeam, Team};
use crate::termination::TerminationCondition;

/// The result of a builder: the built value, or every problem found.
pub type BuildResult<T> = Result<T, Vec<FieldError>>;

/// Builds a model client from a component.
pub type ModelClientBuilder = Arc<dyn Fn(&ComponentModel, &BuildContext<'_>) -> BuildResult<Arc<dyn ModelClient>> + Send + Sync>;
/// Builds an agent from a component.
pub type AgentBuilder = Arc<dyn Fn(&ComponentModel, &BuildContext<'_>) -> BuildResult<Box<dyn Agent>> + Send + Sync>;
/// Builds a team from a component.
pub type TeamBuilder = Arc<dyn Fn(&ComponentModel, &BuildContext<'_>) -> BuildResult<Box<dyn Team>> + Send + Sync>;
/// Builds a termination condition from a component.
pub type TerminationBuilder =
    Arc<dyn Fn(&ComponentModel, &BuildContext<'_>) -> BuildResult<Box<dyn TerminationCondition>> + Send + Sync>;

/// Per-run changes applied while building, taken from a session's `team_metadata`.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Overrides {
    /// Replaces the model name of every model client of the team.
    pub model: Option<String>,
    /// Replaces every model client of the team with the `stub_error_sequence` stub failing
    /// at this position of its sequence.
    pub stub_error_step: Option<u64>,
}

impl Overrides {
    /// Reads the overrides a session's `team_metadata` carries.
    pub fn from_team_metadata(metadata: &Map<String, Value>) -> Overrides {
        let model = metadata.get("model").and_then(Value::as_str).map(str::to_owned).filter(|model| !model.is_empty());
        Overrides { model, stub_error_step: None }
    }
}

/// What a builder can use besides its component: the registry (to build nested components),
/// the provider environment, the shared HTTP client and the session's overrides.
pub struct BuildContext<'a> {
    /// The registry, for nested components.
    pub registry: &'a Registry,
    /// Overrides from the session.
    pub overrides: &'a Overrides,
}

impl BuildContext<'_> {
    /// Returns the provider environment (`OPENAI_API_KEY`, ...).
    pub fn env(&self) -> &ProviderEnv {
        &self.registry.env
    }

    /// Returns the HTTP client that every provider call shares, so connections are pooled.
    pub fn http(&self) -> &reqwest::Client {
        &self.registry.http
    }
}

/// Provider names to builders, one table per component role.
#[derive(Clone)]
pub struct Registry {
    model_clients: HashMap<String, ModelClientBuilder>,
    agents: HashMap<String, AgentBuilder>,
    teams: HashMap<String, TeamBuilder>,
    terminations: HashMap<String, TerminationBuilder>,
    aliases: HashMap<String, String>,
    env: ProviderEnv,
    http: reqwest::Client,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("model_clients", &sorted_keys(&self.model_clients))
            .field("agents", &sorted_keys(&self.agents))
            .field("teams", &sorted_keys(&self.teams))
            .field("terminations", &sorted_keys(&self.terminations))
            .finish_non_exhaustive()
    }
}

fn sorted_keys<V>(table: &HashMap<String, V>) -> Vec<&str> {
    let mut keys: Vec<&str> = table.keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

impl Registry {
    /// Creates a registry with no builders.
    pub fn empty(env: ProviderEnv, http: reqwest::Client) -> Registry {
        Registry {
            model_clients: HashMap::new(),
            agents: HashMap::new(),
            teams: HashMap::new(),
            terminations: HashMap::new(),
            aliases: HashMap::new(),
            env,
            http,
        }
    }

    /// Creates a registry with every built-in component, reading keys and hosts from `env`.
    pub fn with_builtins(env: ProviderEnv) -> Registry {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .build()
            .unwrap_or_default();
        let mut registry = Registry::empty(env, http);
        registry.register_builtins();
        registry
    }

    fn register_builtins(&mut self) {
        crate::model::builders::register(self);
        crate::agent::builders::register(self);
        crate::team::builders::register(self);
        crate::termination::builders::register(self);
    }

    /// Registers a model client builder under `provider`.
    pub fn register_model_client(&mut self, provider: impl Into<String>, builder: ModelClientBuilder) {
        self.model_clients.insert(provider.into(), builder);
    }

    /// Registers an agent builder under `provider`.
    pub fn register_agent(&mut self, provider: impl Into<String>, builder: AgentBuilder) {
        self.agents.insert(provider.into(), builder);
    }

    /// Registers a team builder under `provider`.
    pub fn register_team(&mut self, provider: impl Into<String>, builder: TeamBuilder) {
        self.teams.insert(provider.into(), builder);
    }

    /// Registers a termination condition builder under `provider`.
    pub fn register_termination(&mut self, provider: impl Into<String>, builder: TerminationBuilder) {
        self.terminations.insert(provider.into(), builder);
    }

    /// Makes `alias` resolve to `provider`.
    pub fn register_alias(&mut self, alias: impl Into<String>, provider: impl Into<String>) {
        self.aliases.insert(alias.into(), provider.into());
    }

    fn resolve<'a>(&'a self, provider: &'a str) -> &'a str {
        self.aliases.get(provider).map_or(provider, String::as_str)
    }

    /// Builds the team a stored team component describes. A bare agent becomes a
    /// [`SingleAgentTeam`].
    pub fn build_team(&self, component: &ComponentModel, overrides: &Overrides) -> BuildResult<Box<dyn Team>> {
        let context = BuildContext { registry: self, overrides };
        let provider = self.resolve(&component.provider);
        if let Some(builder) = self.teams.get(provider) {
            return builder(component, &context);
        }
        if let Some(builder) = self.agents.get(provider) {
            let agent = builder(component, &context)?;
            return Ok(Box::new(SingleAgentTeam::new(agent)));
        }
        let mut known = sorted_keys(&self.teams);
        known.extend(sorted_keys(&self.agents));
        Err(vec![unknown_provider("provider", &component.provider, "team or agent", &known)])
    }

    /// Checks that a team component builds, returning every problem found.
    pub fn validate_team(&self, component: &ComponentModel) -> Vec<FieldError> {
        match self.build_team(component, &Overrides::default()) {
            Ok(_) => Vec::new(),
            Err(errors) => errors,
        }
    }

    /// Builds a nested agent component.
    pub fn build_agent(&self, component: &ComponentModel, context: &BuildContext<'_>) -> BuildResult<Box<dyn Agent>> {
        match self.agents.get(self.resolve(&component.provider)) {
            Some(builder) => builder(component, context),
            None => Err(vec![unknown_provider("provider", &component.provider, "agent", &sorted_keys(&self.agents))]),
        }
    }

    /// Builds a nested model client component.
    pub fn build_model_client(
        &self,
        component: &ComponentModel,
        context: &BuildContext<'_>,
    ) -> BuildResult<Arc<dyn ModelClient>> {
        if let Some(step) = context.overrides.stub_error_step {
            return Ok(Arc::new(crate::model::stub::StubErrorClient::new(step)));
        }
        match self.model_clients.get(self.resolve(&component.provider)) {
            Some(builder) => builder(component, context),
            None => {
                let known = sorted_keys(&self.model_clients);
                Err(vec![unknown_provider("provider", &component.provider, "model client", &known)])
            }
        }
    }

    /// Builds a nested termination condition component.
    pub fn build_termination(
        &self,
        component: &ComponentModel,
        context: &BuildContext<'_>,
    ) -> BuildResult<Box<dyn TerminationCondition>> {
        match self.terminations.get(self.resolve(&component.provider)) {
            Some(builder) => builder(component, context),
            None => {
                let known = sorted_keys(&self.terminations);
                Err(vec![unknown_provider("provider", &component.provider, "termination condition", &known)])
            }
        }
    }
}

fn unknown_provider(field: &str, provider: &str, role: &str, known: &[&str]) -> FieldError {
    FieldError::new(field, "unknown_provider", format!("unknown {role} provider '{provider}'"))
        .with_fix(format!("use one of: {}", known.join(", ")))
}

/// Parses a component's `config` into `T`, reporting serde's complaint at its JSON path.
pub fn parse_config<T: DeserializeOwned>(component: &ComponentModel) -> BuildResult<T> {
    let deserializer = component.config.clone();
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." { "config".to_owned() } else { join_path("config", &path) };
        let inner = error.into_inner();
        vec![FieldError::new(field, "invalid_config", inner.to_string())]
    })
}

/// Reads a nested component at `key` of a component's config, if present.
pub fn nested_component(component: &ComponentModel, key: &str) -> BuildResult<Option<ComponentModel>> {
    let Some(value) = component.config.get(key).filter(|value| !value.is_null()) else {
        return Ok(None);
    };
    serde_json::from_value(value.clone()).map(Some).map_err(|error| {
        vec![FieldError::new(join_path("config", key), "invalid_component", format!("not a component: {error}"))
            .with_fix("give an object with at least `provider` and `config`")]
    })
}

/// Prefixes every problem's path with `parent`.
pub fn under(errors: Vec<FieldError>, parent: &str) -> Vec<FieldError> {
    errors.into_iter().map(|error| error.under(parent)).collect()
}
