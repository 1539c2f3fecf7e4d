import { Module } from '@nestjs/common';
import { JwtModule } from '@nestjs/jwt';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AuditModule } from '../audit/audit.module';
import { JwtAuthGuard, UserIdGuard } from './auth.guards';
import { IssuedTokenEntity } from './issued-token.entity';
import { IssuedTokensService } from './issued-tokens.service';
import { OrganizationEntity } from './organization.entity';
import { RevokedTokenEntity } from './revoked-token.entity';
import { UserEntity } from './user.entity';
import { RequestAuthenticator } from './request-authenticator';
import { OrganizationsService } from './organizations.service';
import { TokensService } from './tokens.service';
import { SettingsController } from './settings.controller';
import { UsersService } from './users.service';

@Module({
  imports: [AuditModule, JwtModule.register({}), TypeOrmModule.forFeature([OrganizationEntity, UserEntity, RevokedTokenEntity, IssuedTokenEntity])],
  controllers: [SettingsController],
  providers: [OrganizationsService, UsersService, TokensService, IssuedTokensService, RequestAuthenticator, JwtAuthGuard, UserIdGuard],
  exports: [OrganizationsService, UsersService, TokensService, IssuedTokensService, RequestAuthenticator, JwtAuthGuard, UserIdGuard],
})
export class AuthModule {}
