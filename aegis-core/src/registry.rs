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
//!
//! Besides builders, a registry contains the Rust [`Tool`]s that `FunctionTool` components bind
//! to, the AgentChat providers Aegis rejects on purpose (with the reason), and an optional
//! [`ModelClientHook`] that wraps every model client a built-in agent or team builds, which is
//! how tests record the prompts each model receives.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::agent::Agent;
use crate::component::ComponentModel;
use crate::error::{FieldError, join_path};
use crate::model::{AllowedModelHosts, InvalidHostPattern, ModelClient, ProviderEnv, ProviderHttp, ProviderHttpConfig};
use crate::team::{Participant, SingleAgentTeam, Team};
use crate::termination::TerminationCondition;
use crate::tool::Tool;

/// The result of a builder: the built value, or every problem found.
pub type BuildResult<T> = Result<T, Vec<FieldError>>;

/// Builds a model client from a component.
pub type ModelClientBuilder =
    Arc<dyn Fn(&ComponentModel, &BuildContext<'_>) -> BuildResult<Arc<dyn ModelClient>> + Send + Sync>;
/// Builds an agent from a component.
pub type AgentBuilder = Arc<dyn Fn(&ComponentModel, &BuildContext<'_>) -> BuildResult<Box<dyn Agent>> + Send + Sync>;
/// Builds a team from a component.
pub type TeamBuilder = Arc<dyn Fn(&ComponentModel, &BuildContext<'_>) -> BuildResult<Box<dyn Team>> + Send + Sync>;
/// Builds a termination condition from a component.
pub type TerminationBuilder =
    Arc<dyn Fn(&ComponentModel, &BuildContext<'_>) -> BuildResult<Box<dyn TerminationCondition>> + Send + Sync>;

/// Wraps a model client that an agent or team just built. The first argument names the
/// owner: the agent's name, or `<team name>/selector` for a SelectorGroupChat's own client.
pub type ModelClientHook = Arc<dyn Fn(&str, Arc<dyn ModelClient>) -> Arc<dyn ModelClient> + Send + Sync>;

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
/// the provider environment, the shared HTTP clients and the session's overrides.
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

    /// Returns an HTTP client for provider calls: the registry's clients in turn, so runs
    /// share pooled connections and spread over the pools (see [`ProviderHttp`]).
    pub fn http(&self) -> &reqwest::Client {
        self.registry.http.next_client()
    }

    /// Checks that `url`, the URL a model client would call, has a host the registry's
    /// [`AllowedModelHosts`] allow. `field` is the config path the URL came from, such as
    /// `config.base_url`.
    pub fn check_model_host(&self, field: &str, url: &str) -> BuildResult<()> {
        let Err(rejected) = self.registry.model_hosts.check(url) else {
            return Ok(());
        };
        let fix = format!(
            "use an allowed host, or have the operator allow this one with `aegis serve --allow-model-host {host}` \
             (or AEGIS_ALLOW_MODEL_HOSTS={host})",
            host = rejected.host
        );
        Err(vec![FieldError::new(field, "host_not_allowed", rejected.to_string()).with_fix(fix)])
    }

    /// Builds the model client component of `owner` (an agent's name, or
    /// `<team name>/selector`) and applies the registry's [`ModelClientHook`], if any.
    pub fn model_client(&self, owner: &str, component: &ComponentModel) -> BuildResult<Arc<dyn ModelClient>> {
        let client = self.registry.build_model_client(component, self)?;
        Ok(match &self.registry.model_client_hook {
            Some(hook) => hook(owner, client),
            None => client,
        })
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
    /// AgentChat providers rejected on purpose, with the reason.
    unsupported: HashMap<String, String>,
    tools: BTreeMap<String, Arc<dyn Tool>>,
    model_client_hook: Option<ModelClientHook>,
    env: ProviderEnv,
    /// The hosts model clients may call; defaults derived from `env`.
    model_hosts: AllowedModelHosts,
    http: ProviderHttp,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("model_clients", &sorted_keys(&self.model_clients))
            .field("agents", &sorted_keys(&self.agents))
            .field("teams", &sorted_keys(&self.teams))
            .field("terminations", &sorted_keys(&self.terminations))
            .field("tools", &self.tool_names())
            .finish_non_exhaustive()
    }
}

fn sorted_keys<V>(table: &HashMap<String, V>) -> Vec<&str> {
    let mut keys: Vec<&str> = table.keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

impl Registry {
    /// Creates a registry with no builders whose model clients all use `http`.
    pub fn empty(env: ProviderEnv, http: reqwest::Client) -> Registry {
        Registry::empty_with_http(env, ProviderHttp::from_client(http))
    }

    /// Creates a registry with no builders whose model clients use the clients of `http`.
    pub fn empty_with_http(env: ProviderEnv, http: ProviderHttp) -> Registry {
        Registry {
            model_clients: HashMap::new(),
            agents: HashMap::new(),
            teams: HashMap::new(),
            terminations: HashMap::new(),
            aliases: HashMap::new(),
            unsupported: HashMap::new(),
            tools: BTreeMap::new(),
            model_client_hook: None,
            model_hosts: AllowedModelHosts::from_env(&env),
            env,
            http,
        }
    }

    /// Adds a pattern to the hosts model clients may call (see [`crate::model::hosts`] for the
    /// syntax), such as `models.internal:8000` or `*.openai.azure.com`.
    pub fn allow_model_host(&mut self, pattern: &str) -> Result<(), InvalidHostPattern> {
        self.model_hosts.allow(pattern)
    }

    /// Returns the hosts model clients may call.
    pub fn allowed_model_hosts(&self) -> &AllowedModelHosts {
        &self.model_hosts
    }

    /// Creates a registry with every built-in component, reading keys and hosts from `env`,
    /// and provider clients with the default [`ProviderHttpConfig`].
    pub fn with_builtins(env: ProviderEnv) -> Registry {
        let http = ProviderHttp::new(&ProviderHttpConfig::default())
            .unwrap_or_else(|_| ProviderHttp::from_client(reqwest::Client::default()));
        Registry::with_builtins_and_http(env, http)
    }

    /// Creates a registry with every built-in component whose model clients use `http`.
    pub fn with_builtins_and_http(env: ProviderEnv, http: ProviderHttp) -> Registry {
        let mut registry = Registry::empty_with_http(env, http);
        registry.register_builtins();
        registry
    }

    fn register_builtins(&mut self) {
        crate::model::builders::register(self);
        crate::agent::builders::register(self);
        crate::team::builders::register(self);
        crate::termination::builders::register(self);
        crate::agent::builders::register_nested_aliases(self);
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

    /// Marks an AgentChat `provider` as rejected on purpose: building it reports `reason`.
    pub fn register_unsupported(&mut self, provider: impl Into<String>, reason: impl Into<String>) {
        self.unsupported.insert(provider.into(), reason.into());
    }

    /// Registers a Rust tool; `FunctionTool` components whose `name` matches bind to it.
    pub fn register_tool(&mut self, tool: Arc<dyn Tool>) {
        self.tools.insert(tool.name().to_owned(), tool);
    }

    /// Returns the registered tool called `name`.
    pub fn tool(&self, name: &str) -> Option<Arc<dyn Tool>> {
        self.tools.get(name).cloned()
    }

    /// Returns the names of the registered tools, sorted.
    pub fn tool_names(&self) -> Vec<&str> {
        self.tools.keys().map(String::as_str).collect()
    }

    /// Wraps every model client that built-in agents and teams build from now on.
    pub fn set_model_client_hook(&mut self, hook: ModelClientHook) {
        self.model_client_hook = Some(hook);
    }

    /// Returns the provider an alias stands for, or `provider` itself.
    pub fn resolve<'a>(&'a self, provider: &'a str) -> &'a str {
        self.aliases.get(provider).map_or(provider, String::as_str)
    }

    /// Returns the rejection of an unsupported provider, listing the supported ones of `role`.
    fn unsupported_error(&self, provider: &str, role: &str, known: &[&str]) -> Option<FieldError> {
        let reason = self.unsupported.get(self.resolve(provider))?;
        let class = provider.rsplit('.').next().unwrap_or(provider);
        Some(
            FieldError::new("provider", "unsupported", format!("{class} is not supported yet: {reason}"))
                .with_fix(format!("use one of the supported {role} providers: {}", known.join(", "))),
        )
    }

    /// Builds the team a stored team component describes. A bare agent becomes a
    /// [`SingleAgentTeam`].
    pub fn build_team(&self, component: &ComponentModel, overrides: &Overrides) -> BuildResult<Box<dyn Team>> {
        let context = BuildContext { registry: self, overrides };
        match self.build_participant(component, &context)? {
            Participant::Team(team) => Ok(team),
            Participant::Agent(agent) => Ok(Box::new(SingleAgentTeam::new(agent))),
        }
    }

    /// Builds a member of a team: an agent, or a team nested as one participant.
    pub fn build_participant(
        &self,
        component: &ComponentModel,
        context: &BuildContext<'_>,
    ) -> BuildResult<Participant> {
        let provider = self.resolve(&component.provider);
        if let Some(builder) = self.teams.get(provider) {
            return builder(component, context).map(Participant::Team);
        }
        if let Some(builder) = self.agents.get(provider) {
            return builder(component, context).map(Participant::Agent);
        }
        let mut known = sorted_keys(&self.teams);
        known.extend(sorted_keys(&self.agents));
        if let Some(error) = self.unsupported_error(&component.provider, "team or agent", &known) {
            return Err(vec![error]);
        }
        Err(vec![unknown_provider("provider", &component.provider, "team or agent", &known)])
    }

    /// Checks that a team component builds, returning every problem found.
    pub fn validate_team(&self, component: &ComponentModel) -> Vec<FieldError> {
        match self.build_team(component, &Overrides::default()) {
            Ok(_) => Vec::new(),
            Err(errors) => errors,
        }
    }

    /// Checks that a component of any role builds (a team, agent, model client, termination
    /// condition, tool, workbench, model context or memory), returning every problem found.
    pub fn validate_component(&self, component: &ComponentModel) -> Vec<FieldError> {
        let overrides = Overrides::default();
        let context = BuildContext { registry: self, overrides: &overrides };
        let provider = self.resolve(&component.provider);
        let errors = if self.teams.contains_key(provider)
            || self.agents.contains_key(provider)
            || self.unsupported.contains_key(provider)
        {
            self.build_participant(component, &context).err()
        } else if self.model_clients.contains_key(provider) {
            self.build_model_client(component, &context).err()
        } else if self.terminations.contains_key(provider) {
            self.build_termination(component, &context).err()
        } else {
            self.validate_nested(component, provider, &context)
        };
        errors.unwrap_or_default()
    }

    /// Validates the components agents nest: tools, workbenches, model contexts, memory and
    /// the structured message factory; anything else is an unknown provider.
    fn validate_nested(
        &self,
        component: &ComponentModel,
        provider: &str,
        context: &BuildContext<'_>,
    ) -> Option<Vec<FieldError>> {
        use crate::agent::{ListMemory, ModelContext, StructuredOutput, context::providers as contexts, memory};
        use crate::tool::builders as tools;

        match provider {
            tools::FUNCTION_TOOL => tools::build_tool(component, context).err(),
            tools::STATIC_WORKBENCH | tools::STATIC_STREAM_WORKBENCH => {
                tools::build_workbench(component, context).err()
            }
            contexts::UNBOUNDED | contexts::BUFFERED | contexts::HEAD_AND_TAIL => {
                ModelContext::from_component(component, provider).err()
            }
            memory::PROVIDER => ListMemory::from_component(component, provider).err(),
            crate::agent::structured::PROVIDER => StructuredOutput::from_component(component).err(),
            _ => {
                let mut known = sorted_keys(&self.teams);
                known.extend(sorted_keys(&self.agents));
                known.extend(sorted_keys(&self.model_clients));
                known.extend(sorted_keys(&self.terminations));
                known.sort_unstable();
                Some(vec![unknown_provider("provider", &component.provider, "component", &known)])
            }
        }
    }

    /// Builds a nested agent component.
    pub fn build_agent(&self, component: &ComponentModel, context: &BuildContext<'_>) -> BuildResult<Box<dyn Agent>> {
        if let Some(builder) = self.agents.get(self.resolve(&component.provider)) {
            return builder(component, context);
        }
        let known = sorted_keys(&self.agents);
        let error = self
            .unsupported_error(&component.provider, "agent", &known)
            .unwrap_or_else(|| unknown_provider("provider", &component.provider, "agent", &known));
        Err(vec![error])
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
    // Borrowing the config avoids a deep copy of the JSON on every build, and the engine
    // builds the team once per run.
    serde_path_to_error::deserialize(&component.config).map_err(|error| {
        let path = error.path().to_string();
        let parent = if path == "." { "config".to_owned() } else { join_path("config", &path) };
        let message = error.into_inner().to_string();
        let problem = match crate::error::missing_field(&message) {
            Some(name) => {
                let field = join_path(&parent, name);
                FieldError::new(&field, "missing", format!("missing required field {field}"))
                    .with_fix(format!("add `{name}` to the component's config"))
            }
            None => {
                let (message, fix) = crate::error::readable_serde_message(&message);
                FieldError::new(parent, "invalid_config", message).with_fix(fix)
            }
        };
        vec![problem]
    })
}

/// Reads a nested component at `key` of a component's config, if present.
pub fn nested_component(component: &ComponentModel, key: &str) -> BuildResult<Option<ComponentModel>> {
    let Some(value) = component.config.get(key).filter(|value| !value.is_null()) else {
        return Ok(None);
    };
    ComponentModel::deserialize(value).map(Some).map_err(|error| {
        vec![
            FieldError::new(join_path("config", key), "invalid_component", format!("not a component: {error}"))
                .with_fix("give an object with at least `provider` and `config`"),
        ]
    })
}

/// Prefixes every problem's path with `parent`.
pub fn under(errors: Vec<FieldError>, parent: &str) -> Vec<FieldError> {
    errors.into_iter().map(|error| error.under(parent)).collect()
}
