//! AWS SDK clients, built once per process from an [`AwsSettings`], each with the
//! interceptor that counts its calls in `registry_core::metrics`.

use aws_config::BehaviorVersion;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// Where the AWS resources are; filled by the composition root.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// Endpoint override (LocalStack); `None` for AWS itself.
    pub endpoint_url: Option<String>,
    /// Region override; `None` reads the usual AWS sources.
    pub region: Option<String>,
}

/// Counts every request an SDK client sends (retries included).
#[derive(Debug)]
struct CountCalls;

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "registry-count-calls"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Presigning runs the same pipeline up to signing but sends nothing: not a call.
        if context.request().uri().contains("X-Amz-Signature=") {
            return Ok(());
        }
        if let Some(m) = cfg.load::<Metadata>() {
            registry_core::metrics::record_backend_call(m.service(), m.name());
        }
        Ok(())
    }
}

/// The three clients the adapters use.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl AwsClients {
    /// Loads credentials and region the usual way (env, profile, instance role) once.
    pub async fn load(settings: &AwsSettings) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(region) = &settings.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let sdk = loader.load().await;
        let s3 = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(settings.endpoint_url.is_some())
            .interceptor(CountCalls)
            .build();
        let dynamodb = aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(CountCalls)
            .build();
        let sqs = aws_sdk_sqs::config::Builder::from(&sdk)
            .interceptor(CountCalls)
            .build();
        AwsClients {
            s3: aws_sdk_s3::Client::from_conf(s3),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb),
            sqs: aws_sdk_sqs::Client::from_conf(sqs),
        }
    }
}
